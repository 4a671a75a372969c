// The driver (src/driver.js) around a lost connection: a waiter whose connection the server
// closed while it waited (`CLIENT KILL`, as a restart or an idle timeout would) is lent a new
// one when the session allows (`Run.reopen`, node-event `connected`) and gets the lock once it
// is free, long before its wait runs out. Every wait here is on observed server state.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../src/index.js';
import { RedisServer, command } from './redis.js';

const cleanup = [];
after(() => cleanup.forEach((f) => f()));
// Resolves with `check()`'s first true value, polled every 10 ms (the test's timeout bounds it).
async function until(check) {
  for (;;) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a waiter whose connection the server closed gets the lock once it is free', { timeout: 20_000 }, async () => {
  const s = await RedisServer.start();
  cleanup.push(() => s.stop());
  const [holder, waiter] = [await Client.connect(s.url), await Client.connect(s.url)];
  cleanup.push(() => { holder.close(); waiter.close(); });
  const name = `waiter-killed-${process.pid}`;
  const lease = await holder.acquire(name, { autoRenew: false });
  const WAIT = 30_000, asked = performance.now();
  const waiting = waiter.acquire(name, { wait: WAIT, autoRenew: false });
  const [killed] = await until(async () => { const ids = await s.blockedClientIds(); return ids.length === 1 && ids; });
  assert.equal(await command(s.port, 'CLIENT', 'KILL', 'ID', String(killed)), 1);
  // Without a new connection the waiter would never block again, and fail once its wait ran out.
  await until(async () => { const ids = await s.blockedClientIds(); return ids.length === 1 && ids[0] !== killed; });
  await lease.release();
  const taken = await waiting;
  const took = performance.now() - asked;
  assert.ok(took < WAIT / 2, `got the lock after ${took} ms of its ${WAIT} ms wait`);
  assert.equal(await command(s.port, 'GET', `distlock:{${name}}`), taken.token);
  await taken.release();
  assert.equal(await command(s.port, 'GET', `distlock:{${name}}`), null);
});
