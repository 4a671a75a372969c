// Process CPU per acquire + release pair (`process.cpuUsage`, user + system, every thread of
// the process), for this package and node-redlock in the same run, in alternating blocks, on
// the two workloads of the issue: one client on one name (`uncontended.js`) and 16 clients over
// 1024 names (`many.js`; a name another client held is skipped, and counted as a pair here, as
// its CPU is spent). On a loaded machine pairs/s follows CPU per pair; this reads the CPU
// itself. Each library's clients live through the run, as an application's do; their first
// pass over every name (where this package registers each name with its session once) is
// reported apart, and carries the process's warm-up too (V8 compiling the engine and the JS). The summary is each row's minimum and median over the blocks: load from
// elsewhere only adds. A measurement to report, not a test:
// `cd bench && npm install && node cpu.js redis://127.0.0.1:6379 [blocks] [seconds a block]`.
import Redis from 'ioredis';
import Redlock from 'redlock';
import { Client, NotAcquired } from '../src/index.js';

const url = process.argv[2], blocks = Number(process.argv[3] ?? 5), seconds = Number(process.argv[4] ?? 1);
const CLIENTS = 16, NAMES = 1024;

// Runs `loop(client)` on every client at once; answers [pairs, CPU µs per pair, pairs/s].
async function measure(clients, loop) {
  let pairs = 0;
  const cpu = process.cpuUsage(), start = performance.now();
  for (const counted of await Promise.all(clients.map(loop))) pairs += counted;
  const { user, system } = process.cpuUsage(cpu);
  return [pairs, (user + system) / pairs, pairs / ((performance.now() - start) / 1000)];
}
const forSeconds = (pick) => async (client) => {
  let pairs = 0;
  for (const end = performance.now() + seconds * 1000; performance.now() < end; pairs++) await client.pair(pick());
  return pairs;
};
const randomName = () => `bench-many:${Math.floor(Math.random() * NAMES)}`;

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

const rows = [];
for (const [label, make] of [['distlock (node)', distlock], ['node-redlock', redlock]]) {
  const one = [await make()], many = await Promise.all([...Array(CLIENTS)].map(() => make()));
  // The first pass: each of the 16 clients takes every name once (each from its own offset).
  const [pairs, cpu] = await measure(many, async (client) => {
    const offset = many.indexOf(client) * (NAMES / CLIENTS);
    for (let i = 0; i < NAMES; i++) await client.pair(`bench-many:${(offset + i) % NAMES}`);
    return NAMES;
  });
  console.log(`${label}: first use of ${NAMES} names on ${CLIENTS} clients: ${pairs} pairs, CPU ${cpu.toFixed(1)} us/pair`);
  rows.push({ label: `${label}, 1 client 1 name`, clients: one, loop: forSeconds(() => `bench-one:${label}`), cpu: [], rate: [] });
  rows.push({ label: `${label}, ${CLIENTS} x ${NAMES} names`, clients: many, loop: forSeconds(randomName), cpu: [], rate: [] });
}
for (let block = 0; block < blocks; block++) {
  for (const row of (block % 2 ? [...rows].reverse() : rows)) { // alternating order: neither always goes first
    const [, cpu, rate] = await measure(row.clients, row.loop);
    row.cpu.push(cpu); row.rate.push(rate);
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
for (const { label, cpu, rate } of rows) {
  console.log(`${label.padEnd(32)} CPU us/pair min ${Math.min(...cpu).toFixed(1).padStart(6)} median ${median(cpu).toFixed(1).padStart(6)}   pairs/s median ${median(rate).toFixed(0).padStart(6)} max ${Math.max(...rate).toFixed(0).padStart(6)}`);
}
for (const { clients } of rows) clients.forEach((c) => c.close());
