// Four workers on one lock name, each holding it about 1 ms, for this package and node-redlock
// in the same run: acquisitions/s, per-worker min/max (1.0: every worker got the same share) and
// overlaps (a worker got the lock while another still held it: must stay 0). Each worker has
// its own client and connection, as separate processes would. A measurement to report, not a
// test: `cd bench && npm install && node contention.js redis://127.0.0.1:6379 [seconds]`.
import Redis from 'ioredis';
import Redlock from 'redlock';
import { Client } from '../src/index.js';

const url = process.argv[2], seconds = Number(process.argv[3] ?? 3), WORKERS = 4;
const holdFor1ms = () => new Promise((resolve) => setTimeout(resolve, 1)); // the workload's hold, not a synchronisation

async function measure(label, makeWorker) {
  const workers = await Promise.all([...Array(WORKERS)].map((_, i) => makeWorker(i)));
  const counts = workers.map(() => 0);
  let holder = null, overlaps = 0;
  const start = performance.now(), end = start + seconds * 1000;
  await Promise.all(workers.map(async (worker, i) => {
    while (performance.now() < end) {
      const release = await worker.acquire();
      if (holder !== null) overlaps++;
      holder = i; counts[i]++;
      await holdFor1ms();
      holder = null;
      await release();
    }
  }));
  const elapsed = (performance.now() - start) / 1000, total = counts.reduce((a, b) => a + b, 0);
  const fairness = Math.min(...counts) / Math.max(...counts);
  console.log(`${label.padEnd(44)} ${(total / elapsed).toFixed(0).padStart(6)} acq/s   per worker ${counts.join('/')}   min/max ${fairness.toFixed(2)}   overlaps ${overlaps}`);
  await Promise.all(workers.map((w) => w.close()));
}

const distlock = (options) => async () => {
  const client = await Client.connect(url, { ttl: 30_000, ...options });
  return {
    acquire: async () => { const lease = await client.acquire('bench-contention', { wait: 60_000, autoRenew: false }); return () => lease.release(); },
    close: () => client.close(),
  };
};
const redlock = (retryDelay, retryJitter) => async () => {
  const redis = new Redis(url), lock = new Redlock([redis], { retryCount: -1, retryDelay, retryJitter });
  return {
    acquire: async () => { const held = await lock.lock('bench-contention-redlock', 30_000); return () => held.unlock(); },
    close: () => redis.disconnect(),
  };
};

for (let round = 0; round < 2; round++) {
  await measure('distlock (node)', distlock({}));
  await measure('distlock (node), fair', distlock({ fair: true }));
  await measure('node-redlock (retry 200 ms ± 200, its default)', redlock(200, 200));
  await measure('node-redlock (retry 10 ms ± 10)', redlock(10, 10));
}
