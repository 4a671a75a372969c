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

// A lock's waiter runs in a session slot (`Slot.lend`), a semaphore's permit on a resource
// operation (jco's `lend`): each key the token holds once it is had.
const KINDS = {
  lock: { options: {}, key: (name) => `distlock:{${name}}`, held: (value, token) => value === token },
  semaphore: { options: { limit: 1 }, key: (name, token) => `distlock:{${name}}:permit:${token}`, held: (value) => value !== null },
};

for (const [kind, { options, key, held }] of Object.entries(KINDS)) {
  test(`a ${kind} waiter whose connection the server closed gets it once it is free`, { timeout: 20_000 }, async () => {
    const s = await RedisServer.start();
    cleanup.push(() => s.stop());
    const [holder, waiter] = [await Client.connect(s.url), await Client.connect(s.url)];
    cleanup.push(() => { holder.close(); waiter.close(); });
    const name = `${kind}-waiter-killed-${process.pid}`;
    const lease = await holder.acquire(name, { ...options, autoRenew: false });
    const WAIT = 30_000, asked = performance.now();
    const waiting = waiter.acquire(name, { ...options, wait: WAIT, autoRenew: false });
    const [killed] = await until(async () => { const ids = await s.blockedClientIds(); return ids.length === 1 && ids; });
    assert.equal(await command(s.port, 'CLIENT', 'KILL', 'ID', String(killed)), 1);
    // Without a new connection the waiter would never block again, and fail once its wait ran out.
    await until(async () => { const ids = await s.blockedClientIds(); return ids.length === 1 && ids[0] !== killed; });
    await lease.release();
    const taken = await waiting;
    const took = performance.now() - asked;
    assert.ok(took < WAIT / 2, `got it after ${took} ms of its ${WAIT} ms wait`);
    assert.ok(held(await command(s.port, 'GET', key(name, taken.token)), taken.token));
    await taken.release();
    assert.equal(await command(s.port, 'GET', key(name, taken.token)), null);
  });
}
