// Sixteen clients over 1024 lock names, for this package and node-redlock in the same run:
// each client try-acquires a random name and releases it, over and over; pairs/s counts the
// pairs that got the lock (a name another client held at that moment is skipped, as in
// `distlock bench` scenario C). Each client has its own connection. A measurement to report,
// not a test: `cd bench && npm install && node many.js redis://127.0.0.1:6379 [seconds]`.
import Redis from 'ioredis';
import Redlock from 'redlock';
import { Client, NotAcquired } from '../src/index.js';

const url = process.argv[2], seconds = Number(process.argv[3] ?? 3), CLIENTS = 16, NAMES = 1024;

async function measure(label, makeClient) {
  const clients = await Promise.all([...Array(CLIENTS)].map(() => makeClient()));
  let pairs = 0, skipped = 0;
  const start = performance.now(), end = start + seconds * 1000;
  await Promise.all(clients.map(async (client) => {
    while (performance.now() < end) {
      if (await client.pair(`bench-many:${Math.floor(Math.random() * NAMES)}`)) pairs++; else skipped++;
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  console.log(`${label.padEnd(16)} ${(pairs / elapsed).toFixed(0).padStart(7)} pairs/s   (${skipped} names found held)`);
  await Promise.all(clients.map((c) => c.close()));
}

const distlock = async () => {
  const client = await Client.connect(url, { ttl: 30_000 });
  return {
    pair: async (name) => {
      try { await (await client.acquire(name, { autoRenew: false })).release(); return true; }
      catch (error) { if (error instanceof NotAcquired) return false; throw error; }
    },
    close: () => client.close(),
  };
};
const redlock = async () => {
  const redis = new Redis(url), lock = new Redlock([redis], { retryCount: 0 });
  return {
    pair: async (name) => {
      try { await (await lock.lock(name, 30_000)).unlock(); return true; }
      catch (error) { if (error instanceof Redlock.LockError) return false; throw error; }
    },
    close: () => redis.disconnect(),
  };
};

for (let round = 0; round < 2; round++) {
  await measure('distlock (node)', distlock);
  await measure('node-redlock', redlock);
}
