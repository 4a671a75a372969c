// Uncontended acquire+release latency (p50, p99) on one server, for this package beside
// node-redlock (over ioredis) on the same workload. A measurement to report, not a test:
// `cd bench && npm install && node uncontended.js redis://127.0.0.1:6379`.
import Redis from 'ioredis';
import Redlock from 'redlock';
import { Client } from '../src/index.js';

const ROUNDS = 2000, WARMUP = 200;

async function measure(label, once) {
  for (let i = 0; i < WARMUP; i++) await once();
  const samples = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = process.hrtime.bigint();
    await once();
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  samples.sort((a, b) => a - b);
  const p50 = samples[Math.floor(samples.length / 2)], p99 = samples[Math.floor(samples.length * 0.99)];
  console.log(`${label.padEnd(28)} p50 ${p50.toFixed(0).padStart(8)} us   p99 ${p99.toFixed(0).padStart(8)} us`);
}

const url = process.argv[2];
const client = await Client.connect(url, { ttl: 30_000 });
await measure('distlock (node)', async () => (await client.acquire('bench-node', { autoRenew: false })).release());
client.close();
const redis = new Redis(url);
const redlock = new Redlock([redis], { retryCount: 0 });
await measure('node-redlock', async () => (await redlock.lock('bench-redlock', 30_000)).unlock());
redis.disconnect();
