// The engine conformance cases (bindings/conformance.json), run through the Node API against
// real redis-server processes. Every case id must have a test here, and every test a case.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Client, NotAcquired, LockLost, Unavailable, InvalidArgument, ServerError } from '../src/index.js';
import { RedisServer, command, commandOver, makeCertificates } from './redis.js';
import { machines, leanFeed, leanAcquireFlat, leanReleaseFlat, leanExtendFlat, leanFeedFlat, leanRegister } from '../generated/engine.js';
import { decodeStep } from '../src/flat.js';
import { Slots } from '../src/slots.js';

// The names one session registers at most (wit/engine.wit, "Bounds").
const NAMES_PER_SESSION = 4096;
import net from 'node:net';
import { now, entropy } from '../src/driver.js';

const { cases } = JSON.parse(readFileSync(new URL('../../conformance.json', import.meta.url)));
const servers = [];
const clients = [];
after(() => { clients.forEach((c) => c.close()); servers.forEach((s) => s.stop()); });

async function start(n = 1) {
  const started = await Promise.all([...Array(n)].map(() => RedisServer.start()));
  servers.push(...started);
  return started;
}
async function connect(urls, options) {
  const client = await Client.connect(urls, options);
  clients.push(client);
  return client;
}
let counter = 0;
const unique = (what) => `${what}-${process.pid}-${counter++}`;
const key = (name) => `distlock:{${name}}`;
const rejectsWith = (promise, Class, check = () => true) => assert.rejects(promise, (e) => e instanceof Class && check(e));
const WRONG = '0123456789abcdef0123456789abcdef';
const permitKey = (name, token) => `${key(name)}:permit:${token}`;
// The core's bound on a semaphore's limit (distlock_core::MAX_PERMITS).
const MAX_PERMITS = 1024;
// The core's bound on a multi-name lock's names (distlock_core::MAX_MULTI_NAMES).
const MAX_MULTI_NAMES = 16;
// Resolves once a client blocks on a wake-up list (a waiter is waiting, observed).
// The request timeout of the cases with a frozen or stopped node: it also bounds the
// handshakes, which a loaded machine missed at 300 ms; a frozen node costs a try this much
// once, and a skipped one must cost less.
const FROZEN_REQUEST_TIMEOUT_MS = 1000;
// The renewal cases' TTL: short, so renewals happen within the test, yet long enough that a
// loaded machine (a renewal every third of it, each extend given the validity left, at most the
// default 1 s request timeout) keeps or loses the lease for the reason the case names, not for
// a slow scheduler. The handshake keeps the default request timeout: a renewal needs no shorter
// one, and a 200 ms one failed the connect under load.
const RENEWAL_TTL_MS = 1500;
// Polls `check` until it holds; fails after `ms`.
const waitFor = async (check, what, ms = 10_000) => {
  for (const end = Date.now() + ms; !check(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
  }
};
const blocked = async (s) => { while ((await s.blockedClients()) === 0) await new Promise((r) => setTimeout(r, 10)); };

const impl = {
  'acquire-release': async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const name = unique('acquire');
    const lease = await client.acquire(name, { autoRenew: false });
    assert.equal(lease.token.length, 32);
    assert.equal(await command(s.port, 'GET', key(name)), lease.token);
    await lease.release();
    assert.equal(await command(s.port, 'GET', key(name)), null);
  },
  'try-acquire-held': async () => {
    const [s] = await start();
    const [a, b] = [await connect(s.url), await connect(s.url)];
    const name = unique('try');
    const lease = await a.acquire(name);
    await rejectsWith(b.tryAcquire(name), NotAcquired, (e) => e.detail.attempts === 1);
    assert.equal(await command(s.port, 'GET', key(name)), lease.token);
    await lease.release();
  },
  'wait-for-release': async () => {
    const [s] = await start();
    const [a, b] = [await connect(s.url), await connect(s.url)];
    const name = unique('wait');
    const lease = await a.acquire(name);
    const waiting = b.acquire(name, { wait: 10_000 });
    while ((await s.blockedClients()) === 0) await new Promise((r) => setTimeout(r, 10));
    await lease.release();
    const taken = await waiting;
    assert.notEqual(taken.token, lease.token);
    assert.equal(await command(s.port, 'GET', key(name)), taken.token);
    await taken.release();
  },
  'release-by-token': async () => {
    const [s] = await start();
    const [a, b] = [await connect(s.url), await connect(s.url)];
    const name = unique('token');
    const lease = await a.acquire(name, { autoRenew: false });
    await rejectsWith(b.release(name, WRONG), LockLost);
    assert.equal(await command(s.port, 'GET', key(name)), lease.token);
    await b.release(name, lease.token);
    assert.equal(await command(s.port, 'GET', key(name)), null);
  },
  extend: async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const name = unique('extend');
    const lease = await client.acquire(name, { autoRenew: false });
    const validUntil = await client.extend(name, lease.token, 120_000);
    assert.ok(validUntil > lease.validUntil + 60_000);
    assert.ok((await command(s.port, 'PTTL', key(name))) > 60_000);
    await rejectsWith(client.extend(name, WRONG, 120_000), LockLost, (e) => e.code === 'not-held');
    await lease.release();
  },
  'fencing-order': async () => {
    for (const n of [1, 3]) {
      const nodes = await start(n);
      const client = await connect(nodes.map((s) => s.url), { fenced: true });
      const name = unique('fence');
      const fences = [];
      for (let i = 0; i < 3; i++) {
        const lease = await client.acquire(name, { autoRenew: false });
        fences.push(lease.fence);
        await lease.release();
      }
      assert.ok(fences.every((f, i) => typeof f === 'bigint' && (i === 0 || f > fences[i - 1])), `${fences}`);
    }
  },
  'redlock-frozen-node': async () => {
    const nodes = await start(3);
    const client = await connect(nodes.map((s) => s.url), { requestTimeout: FROZEN_REQUEST_TIMEOUT_MS });
    nodes[2].pause();
    try {
      const name = unique('frozen');
      const lease = await client.acquire(name, { autoRenew: false });
      await lease.release();
      for (const s of nodes.slice(0, 2)) assert.equal(await command(s.port, 'GET', key(name)), null);
    } finally {
      nodes[2].resume();
    }
  },
  'redlock-majority-down': async () => {
    const nodes = await start(3);
    nodes[1].stop();
    nodes[2].stop();
    await rejectsWith(Client.connect(nodes.map((s) => s.url), { requestTimeout: FROZEN_REQUEST_TIMEOUT_MS }), Unavailable, (e) => /1 of 3/.test(e.message));
  },
  'renewal-keeps-lease': async () => {
    const [s] = await start();
    const client = await connect(s.url, { ttl: RENEWAL_TTL_MS });
    const name = unique('renew');
    const lease = await client.acquire(name);
    const firstEnd = lease.validUntil;
    // Observed: the renewal moved the validity past the first lease's end by a whole TTL.
    await waitFor(() => lease.validUntil > firstEnd + RENEWAL_TTL_MS, 'three renewals');
    assert.equal(await command(s.port, 'GET', key(name)), lease.token);
    assert.ok(lease.validity > 0);
    await lease.release();
  },
  'lease-lost': async () => {
    const [s] = await start();
    const client = await connect(s.url, { ttl: RENEWAL_TTL_MS });
    const name = unique('lost');
    const lease = await client.acquire(name);
    const lost = new Promise((resolve) => lease.signal.addEventListener('abort', () => resolve(lease.signal.reason)));
    await command(s.port, 'DEL', key(name)); // an operator resets the lock
    const reason = await lost;
    assert.ok(reason instanceof LockLost, `${reason}`);
    assert.equal(lease.validity, 0);
    await rejectsWith(lease.release(), LockLost);
  },
  'dropped-lease-expires': async () => {
    const [s] = await start();
    const holder = await connect(s.url, { ttl: 400 });
    const waiter = await connect(s.url);
    const name = unique('dropped');
    const lease = await holder.acquire(name, { autoRenew: false });
    holder.close(); // never released
    const taken = await waiter.acquire(name, { wait: 5000, autoRenew: false });
    assert.notEqual(taken.token, lease.token);
    await taken.release();
  },
  status: async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const name = unique('status');
    const lease = await client.acquire(name, { autoRenew: false });
    const held = await client.status(name);
    assert.deepEqual(held.verdict, { tag: 'held', val: lease.token });
    assert.equal(held.nodes[0].val.holder, lease.token);
    assert.equal(held.nodes[0].val.queued, 0n, 'nobody waits');
    await lease.release();
    assert.equal((await client.status(name)).verdict.tag, 'free');
  },
  'fair-arrival-order': async () => {
    const [s] = await start();
    const name = unique('fair');
    const holder = await connect(s.url, { fair: true });
    let lease = await holder.acquire(name, { autoRenew: false });
    const pending = new Map();
    for (let arrival = 0; arrival < 3; arrival++) {
      const waiter = await connect(s.url, { fair: true });
      const taken = waiter.acquire(name, { wait: 20_000, autoRenew: false });
      pending.set(arrival, taken.then((lease) => ({ arrival, lease })));
      // The next waiter starts only once this one is in the queue: arrival order is known.
      while ((await command(s.port, 'ZCARD', `${key(name)}:queue`)) !== arrival + 1) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal((await holder.status(name)).nodes[0].val.queued, 3n, 'status counts the queued waiters');
    for (let arrival = 0; arrival < 3; arrival++) {
      await holder.release(name, lease.token);
      const served = await Promise.race(pending.values());
      assert.equal(served.arrival, arrival, 'served out of arrival order');
      pending.delete(served.arrival);
      lease = served.lease;
      assert.equal(await command(s.port, 'GET', key(name)), lease.token);
    }
    await lease.release();
    assert.equal(await command(s.port, 'GET', key(name)), null);
    const nodes = ['redis://127.0.0.1:1', 'redis://127.0.0.1:2', 'redis://127.0.0.1:3'];
    await rejectsWith(Client.connect(nodes, { fair: true }), InvalidArgument, (e) => e.detail.kind === 'fair-unsupported');
  },
  'bad-names': async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const kinds = { '': 'empty-name', ['n'.repeat(300)]: 'name-too-long', 'a\r\nb': 'name-control-byte', '}x': 'name-starts-with-brace' };
    for (const [name, kind] of Object.entries(kinds)) {
      await rejectsWith(client.acquire(name), InvalidArgument, (e) => e.detail.kind === kind);
    }
    assert.equal(await command(s.port, 'DBSIZE'), 0);
  },
  'bad-ttls': async () => {
    const [s] = await start();
    await rejectsWith(Client.connect(s.url, { ttl: 0 }), InvalidArgument, (e) => e.detail.kind === 'bad-ttl');
    await rejectsWith(Client.connect(s.url, { ttl: 3 }), InvalidArgument, (e) => e.detail.kind === 'drift-exceeds-ttl');
    const client = await connect(s.url);
    const lease = await client.acquire(unique('ttl'), { autoRenew: false });
    await rejectsWith(client.extend(lease.name, lease.token, 0), InvalidArgument, (e) => e.detail.kind === 'bad-ttl');
    await lease.release();
  },
  'bad-input': async () => {
    await rejectsWith(Client.connect('http://x'), InvalidArgument, (e) => e.detail.kind === 'bad-url');
    await rejectsWith(Client.connect([]), InvalidArgument, (e) => e.detail.kind === 'bad-node-count');
    const [s] = await start();
    const client = await connect(s.url);
    await rejectsWith(client.release('x', 'short'), InvalidArgument, (e) => e.detail.kind === 'bad-token');
  },
  'not-tried-yet': async () => {
    const [s] = await start();
    const session = machines.open({ nodes: [s.url], fenced: false }, entropy());
    assert.equal(session.connectOutcome(), undefined);
    await connect(s.url); // resolves once the connect outcome is ok
  },
  'operation-before-handshake': async () => {
    const [s] = await start();
    const session = machines.open({ nodes: [s.url], fenced: false }, entropy());
    assert.ok(session.connect(0, now()), 'a connect under way, its handshake not completed');
    assert.throws(() => session.status('x', now()), (e) => e.tag === 'unavailable');
    const client = new Client([s.url], {}); // no explicit connect: the first operation waits for it
    clients.push(client);
    assert.deepEqual((await client.status(unique('fresh'))).verdict, { tag: 'free' });
  },
  'frozen-node-skipped': async () => {
    const [s] = await start();
    const client = await connect(s.url, { requestTimeout: FROZEN_REQUEST_TIMEOUT_MS });
    const name = unique('frozen-one');
    const attempt = () => client.tryAcquire(name, { autoRenew: false }).catch((e) => e);
    s.pause();
    let first, second, took;
    try {
      first = await attempt();
      const started = now();
      second = await attempt();
      took = now() - started;
    } finally {
      s.resume();
    }
    assert.ok(first instanceof Unavailable && first.detail.lastFailure?.tag === 'timeout', `${first}`);
    assert.ok(second instanceof Unavailable && second.detail.lastFailure?.tag === 'disconnected', `${second}`);
    assert.ok(took < FROZEN_REQUEST_TIMEOUT_MS, `the second try waited ${took} ms: the silent node again`);
    const deadline = now() + 10_000; // once it answers again (after its backoff pause), the lock is had
    let lease;
    while (!((lease = await attempt()) instanceof Object && lease.token)) {
      assert.ok(now() < deadline, `not taken back: ${lease}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await lease.release();
  },
  'semaphore-limit': async () => {
    const [s] = await start();
    const [a, b] = [await connect(s.url), await connect(s.url)];
    const name = unique('semaphore');
    const first = await a.acquire(name, { limit: 2, autoRenew: false });
    const second = await a.acquire(name, { limit: 2, autoRenew: false });
    assert.notEqual(first.token, second.token);
    for (const lease of [first, second]) assert.ok((await command(s.port, 'PTTL', permitKey(name, lease.token))) > 0);
    await rejectsWith(a.tryAcquire(name, { limit: 2 }), NotAcquired, (e) => e.detail.attempts === 1);
    const status = await a.status(name);
    assert.equal(status.verdict.tag, 'shared');
    const { permits, holder } = status.nodes[0].val;
    assert.equal(holder, undefined);
    assert.equal(permits.limit, 2);
    assert.deepEqual(permits.holders.map((h) => h.token).sort(), [first.token, second.token].sort());
    const waiting = b.acquire(name, { limit: 2, wait: 10_000, autoRenew: false });
    await blocked(s);
    await a.release(name, first.token, { limit: 2 });
    const third = await waiting;
    assert.equal(await command(s.port, 'EXISTS', permitKey(name, first.token)), 0);
    assert.equal(await command(s.port, 'EXISTS', permitKey(name, third.token)), 1);
    await rejectsWith(a.release(name, first.token, { limit: 2 }), LockLost);
    await rejectsWith(a.tryAcquire(name, { limit: 2 }), NotAcquired);
    await second.release();
    await third.release();
    assert.equal((await a.status(name)).verdict.tag, 'free');
  },
  'rw-readers-share': async () => {
    const [s] = await start();
    const [a, b] = [await connect(s.url), await connect(s.url)];
    const name = unique('rw');
    const r1 = await a.readLock(name, { autoRenew: false });
    const r2 = await a.readLock(name, { autoRenew: false });
    assert.notEqual(r1.token, r2.token);
    await rejectsWith(a.writeLock(name), NotAcquired, (e) => e.detail.attempts === 1);
    let status = await a.status(name);
    assert.equal(status.verdict.tag, 'shared');
    assert.equal(status.nodes[0].val.rw.writer, undefined);
    assert.deepEqual(status.nodes[0].val.rw.readers.map((h) => h.token).sort(), [r1.token, r2.token].sort());
    const waiting = b.writeLock(name, { wait: 10_000, autoRenew: false });
    await blocked(s);
    await r1.release();
    await a.release(name, r2.token, { mode: 'read' });
    const writer = await waiting;
    assert.equal(await command(s.port, 'GET', `${key(name)}:writer`), writer.token);
    await rejectsWith(a.readLock(name), NotAcquired);
    await rejectsWith(a.writeLock(name), NotAcquired);
    status = await a.status(name);
    assert.equal(status.verdict.tag, 'shared');
    assert.equal(status.nodes[0].val.rw.writer.token, writer.token);
    assert.deepEqual(status.nodes[0].val.rw.readers, []);
    await writer.release();
    assert.equal((await a.status(name)).verdict.tag, 'free');
  },
  'shaped-extend-renewal': async () => {
    const [s] = await start();
    const client = await connect(s.url, { ttl: RENEWAL_TTL_MS });
    const name = unique('shaped-extend');
    const permit = await client.acquire(name, { limit: 3, autoRenew: false });
    await client.extend(name, permit.token, 60_000, { limit: 3 });
    assert.ok((await command(s.port, 'PTTL', permitKey(name, permit.token))) > 30_000);
    await permit.release();
    const rwName = unique('shaped-extend-rw');
    const hold = await client.writeLock(rwName, { autoRenew: false });
    await client.extend(rwName, hold.token, 60_000, { mode: 'write' });
    assert.ok((await command(s.port, 'PTTL', `${key(rwName)}:writer`)) > 30_000);
    await rejectsWith(client.extend(rwName, hold.token, 60_000, { mode: 'read' }), LockLost);
    await hold.release();
    const renewed = await client.acquire(name, { limit: 3 });
    // Held past three TTLs from the acquire: only the renewal's extends can do that.
    const until = now() + 3 * RENEWAL_TTL_MS, deadline = now() + 10_000;
    while (!(now() > until && renewed.validUntil > until)) {
      assert.ok(now() < deadline && renewed.validity > 0, 'the permit was not renewed');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await command(s.port, 'EXISTS', permitKey(name, renewed.token)), 1);
    await renewed.release();
  },
  'shaped-bad-input': async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const name = unique('shaped-bad');
    for (const limit of [0, MAX_PERMITS + 1]) {
      await rejectsWith(client.acquire(name, { limit }), InvalidArgument, (e) => e.detail.kind === 'bad-limit');
    }
    const fair = await connect(s.url, { fair: true });
    await rejectsWith(fair.readLock(name), InvalidArgument, (e) => e.detail.kind === 'rw-lock-unsupported');
    await rejectsWith(fair.writeLock(name), InvalidArgument, (e) => e.detail.kind === 'rw-lock-unsupported');
    const others = await start(2);
    const redlock = await connect([s.url, ...others.map((o) => o.url)]);
    await rejectsWith(redlock.acquire(name, { limit: 2 }), InvalidArgument, (e) => e.detail.kind === 'semaphore-unsupported');
    assert.equal(await command(s.port, 'DBSIZE'), 0);
    const mutex = await client.acquire(name, { autoRenew: false });
    await rejectsWith(client.acquire(name, { limit: 2 }), ServerError, (e) => e.detail.error.kind === 'wrong-type');
    assert.equal(await command(s.port, 'GET', key(name)), mutex.token);
    const jobs = unique('shaped-bad-jobs');
    const permit = await client.acquire(jobs, { limit: 2, autoRenew: false });
    await rejectsWith(client.writeLock(jobs), ServerError, (e) => e.detail.error.kind === 'wrong-type');
    await rejectsWith(client.acquire(jobs, { limit: 3 }), ServerError, (e) => e.detail.error.kind === 'wrong-limit');
    const { permits } = (await client.status(jobs)).nodes[0].val;
    assert.equal(permits.limit, 2);
    assert.deepEqual(permits.holders.map((h) => h.token), [permit.token]);
  },
  'multi-all-or-nothing': async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const [a, b] = [unique('multi-all-a'), unique('multi-all-b')];
    const plain = await client.acquire(b, { autoRenew: false });
    await rejectsWith(client.acquireMany([a, b]), NotAcquired, (e) => e.detail.attempts === 1);
    assert.equal(await command(s.port, 'GET', key(a)), null, 'a held name takes nothing');
    await plain.release();
    const set = await client.acquireMany([b, a], { autoRenew: false });
    assert.deepEqual(set.names, [b, a]);
    for (const name of [a, b]) assert.equal(await command(s.port, 'GET', key(name)), set.token);
    await client.releaseMany([a, b], set.token);
    for (const name of [a, b]) assert.equal(await command(s.port, 'GET', key(name)), null);
    await rejectsWith(client.releaseMany([a, b], set.token), LockLost);
  },
  'multi-overlap-excludes': async () => {
    const [s] = await start();
    const [one, two] = [await connect(s.url), await connect(s.url)];
    const [a, b, c] = ['a', 'b', 'c'].map((x) => unique(`multi-overlap-${x}`));
    const first = await one.acquireMany([a, b], { autoRenew: false });
    await rejectsWith(one.acquireMany([b, c]), NotAcquired, (e) => e.detail.attempts === 1);
    assert.equal(await command(s.port, 'GET', key(c)), null);
    await rejectsWith(one.tryAcquire(a), NotAcquired);
    const waiting = two.acquireMany([b, c], { wait: 10_000, autoRenew: false });
    await blocked(s);
    await first.release();
    const second = await waiting;
    for (const name of [b, c]) assert.equal(await command(s.port, 'GET', key(name)), second.token);
    assert.equal(await command(s.port, 'GET', key(a)), null);
    await second.release();
  },
  'multi-extend-renewal': async () => {
    const [s] = await start();
    const client = await connect(s.url, { ttl: RENEWAL_TTL_MS });
    const [a, b] = [unique('multi-extend-a'), unique('multi-extend-b')];
    const set = await client.acquireMany([a, b], { autoRenew: false });
    await client.extendMany([a, b], set.token, 60_000);
    for (const name of [a, b]) assert.ok((await command(s.port, 'PTTL', key(name))) > 30_000, name);
    await rejectsWith(client.extendMany([a, b], WRONG, 60_000), LockLost);
    await set.release();
    const renewed = await client.acquireMany([a, b]);
    // Held past three TTLs from the acquire: only the renewal's extends can do that.
    const until = now() + 3 * RENEWAL_TTL_MS, deadline = now() + 10_000;
    while (!(now() > until && renewed.validUntil > until)) {
      assert.ok(now() < deadline && renewed.validity > 0, 'the set was not renewed');
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const name of [a, b]) assert.equal(await command(s.port, 'GET', key(name)), renewed.token);
    await renewed.release();
  },
  'multi-bad-sets': async () => {
    const [s] = await start();
    const client = await connect(s.url);
    const [a, b] = [unique('multi-bad-a'), unique('multi-bad-b')];
    const kind = (k) => (e) => e.detail.kind === k;
    await rejectsWith(client.acquireMany([]), InvalidArgument, kind('no-names'));
    const many = [...Array(MAX_MULTI_NAMES + 1)].map((_, i) => `${a}-${i}`);
    await rejectsWith(client.acquireMany(many), InvalidArgument, kind('too-many-names'));
    await rejectsWith(client.acquireMany([a, b, a]), InvalidArgument, kind('duplicate-name'));
    await rejectsWith(client.acquireMany([a, '']), InvalidArgument, kind('empty-name'));
    const fair = await connect(s.url, { fair: true });
    await rejectsWith(fair.acquireMany([a, b]), InvalidArgument, kind('multi-unsupported'));
    assert.equal(await command(s.port, 'DBSIZE'), 0, 'nothing written');
  },
  'get-or-compute': async () => {
    const [s] = await start();
    const waiting = async (name) => Number((await command(s.port, 'GET', `${key(name)}:value:waiters`)) ?? 0);
    const until = async (check) => { while (!(await check())) await new Promise((r) => setTimeout(r, 10)); };
    const asText = { encode: (v) => v, decode: (b) => new TextDecoder().decode(b) };
    const name = unique('compute');
    const computed = [];
    const callers = await Promise.all([...Array(5)].map(() => connect(s.url)));
    const got = await Promise.all(callers.map((client, i) => client.getOrCompute(name, async () => {
      computed.push(i);
      await until(async () => (await waiting(name)) >= 4); // the four others wait for the value
      return `computed by ${i}`;
    }, { ttl: 60_000, wait: 20_000, ...asText })));
    assert.equal(computed.length, 1, 'the computation ran once');
    assert.ok(got.every((v) => v === got[0]) && got[0].startsWith('computed by '), String(got));
    assert.equal(await command(s.port, 'GET', key(name)), null, 'the store freed the lock');
    assert.equal(await command(s.port, 'GET', `${key(name)}:value`), got[0]);
    const setCalls = async () => Number(/cmdstat_set:calls=(\d+)/.exec(await command(s.port, 'INFO', 'commandstats'))?.[1] ?? 0);
    const sets = await setCalls();
    const reader = await connect(s.url);
    assert.equal(await reader.getOrCompute(name, () => assert.fail('recomputed'), { ttl: 60_000, ...asText }), got[0]);
    assert.equal(await setCalls(), sets, 'a present value writes nothing');

    // A computation that fails gives its lock up: exactly one waiter computes next.
    const flaky = unique('compute-flaky');
    const failing = (await connect(s.url)).getOrCompute(flaky, async () => {
      await until(async () => (await waiting(flaky)) >= 3);
      throw new Error('the backend is down');
    }, { ttl: 60_000, ...asText });
    await until(async () => (await command(s.port, 'EXISTS', key(flaky))) === 1);
    const retried = [];
    const waiters = await Promise.all([...Array(3)].map(() => connect(s.url)));
    const values = Promise.all(waiters.map((client, i) => client.getOrCompute(flaky, () => { retried.push(i); return `retried by ${i}`; }, { ttl: 60_000, wait: 20_000, ...asText })));
    await assert.rejects(failing, (e) => e.message === 'the backend is down');
    const again = await values;
    assert.equal(retried.length, 1, 'exactly one waiter computed');
    assert.ok(again.every((v) => v === again[0]) && again[0].startsWith('retried by '), String(again));
  },
  'get-or-compute-bad-input': async () => {
    const servers = await start(3);
    const name = unique('compute-bad');
    const never = () => assert.fail('computed');
    const refused = [
      await connect(servers.map((s) => s.url)),
      await connect(servers[0].url, { fenced: true }),
    ];
    for (const client of refused) await rejectsWith(client.getOrCompute(name, never, { ttl: 60_000 }), InvalidArgument, (e) => e.detail.kind === 'compute-unsupported');
    // (A Node client has no key layout option: its locks always use the tagged layout.)
    const [s] = servers;
    for (const server of servers) assert.equal(await command(server.port, 'DBSIZE'), 0, 'nothing written');
    const client = await connect(s.url);
    await rejectsWith(client.getOrCompute(name, () => 'x'.repeat(1_000_001), { ttl: 60_000, encode: (v) => v }), InvalidArgument, (e) => e.detail.kind === 'value-too-long');
    await rejectsWith(client.getOrCompute(name, () => 'v', { ttl: 0, encode: (v) => v }), InvalidArgument, (e) => e.detail.kind === 'bad-ttl');
    assert.equal(await command(s.port, 'GET', `${key(name)}:value`), null, 'neither stored a value');
    assert.equal(await command(s.port, 'GET', key(name)), null, 'and the refused computations gave their lock up');
    // An operator resets the lock while the computation runs: its store is refused.
    await rejectsWith(client.getOrCompute(name, async () => { await command(s.port, 'DEL', key(name)); return 'v'; }, { ttl: 60_000, encode: (v) => v }),
      LockLost, (e) => e.code === 'not-held');
    assert.equal(await command(s.port, 'GET', `${key(name)}:value`), null, 'a computation whose lock was lost stores nothing');
  },
};

test('every conformance case has a test', () => {
  assert.deepEqual(Object.keys(impl).sort(), cases.map((c) => c.id).sort());
});
for (const { id, says } of cases) test(`${id}: ${says}`, { timeout: 30_000 }, impl[id]);

test("getOrCompute's fn gets an AbortSignal that fires when its lock is lost", { timeout: 30_000 }, async () => {
  const [s] = await start();
  const client = await connect(s.url);
  const name = unique('compute-abort');
  let seen;
  await rejectsWith(client.getOrCompute(name, async (signal) => {
    seen = signal;
    await command(s.port, 'DEL', key(name)); // an operator resets the lock while fn runs
    // The renewal (a fraction of the 600 ms lock TTL) finds the lock gone and aborts fn.
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    return 'late';
  }, { ttl: 60_000, lockTtl: 600, encode: (v) => v }), LockLost);
  assert.ok(seen?.aborted, 'the signal fired');
  assert.equal(await command(s.port, 'GET', `${key(name)}:value`), null, 'nothing stored');
});

test('many concurrent locks on one client', async () => {
  const [s] = await start();
  const client = await connect(s.url);
  const names = [...Array(20)].map(() => unique('many'));
  const leases = await Promise.all(names.map((n) => client.acquire(n)));
  for (const [i, lease] of leases.entries()) assert.equal(await command(s.port, 'GET', key(names[i])), lease.token);
  await Promise.all(leases.map((l) => l.release()));
  for (const n of names) assert.equal(await command(s.port, 'GET', key(n)), null);
});

test('an aborted wait rejects with the signal reason and leaves the holder alone', async () => {
  const [s] = await start();
  const [a, b] = [await connect(s.url), await connect(s.url)];
  const name = unique('abort');
  const lease = await a.acquire(name);
  const controller = new AbortController();
  const waiting = b.acquire(name, { wait: 10_000, signal: controller.signal });
  while ((await s.blockedClients()) === 0) await new Promise((r) => setTimeout(r, 10));
  controller.abort(new Error('stop waiting'));
  await assert.rejects(waiting, /stop waiting/);
  assert.equal(await command(s.port, 'GET', key(name)), lease.token);
  await lease.release();
});

test('closing the client ends a wait in flight (given up, its connection closed, not left to the wait) and leaves the holder alone', async () => {
  const [s] = await start();
  const [a, b] = [await connect(s.url), await connect(s.url)];
  const name = unique('close-wait');
  const lease = await a.acquire(name);
  const waiting = b.acquire(name, { wait: 60_000 });
  while ((await s.blockedClients()) === 0) await new Promise((r) => setTimeout(r, 10));
  b.close();
  // Given up at once (an AbortError saying why), not left to fail when the 60 s wait runs out.
  await assert.rejects(waiting, (e) => e.name === 'AbortError' && e.message === 'the client was closed');
  while ((await s.blockedClients()) !== 0) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await command(s.port, 'GET', key(name)), lease.token);
  await lease.release();
});

test('a client past the engine\'s 4096 registered names forgets them and goes on; a lease taken before releases after', async () => {
  const [s] = await start();
  const client = await connect(s.url);
  const base = unique('names'), before = await client.acquire(`${base}-held`, { autoRenew: false });
  for (let i = 0; i < 4200; i++) await (await client.acquire(`${base}-${i}`, { autoRenew: false })).release(); // 4097th: forgets
  assert.equal(await command(s.port, 'GET', key(`${base}-held`)), before.token);
  await before.release(); // its name was forgotten with the rest: registered again
  assert.equal(await command(s.port, 'GET', key(`${base}-held`)), null);
  const again = await client.acquire(`${base}-0`, { autoRenew: false }); // forgotten too
  assert.equal(await command(s.port, 'GET', key(`${base}-0`)), again.token);
  await again.release();
  assert.equal(await command(s.port, 'GET', key(`${base}-0`)), null);
  // A refused name is the name's fault (the table has room again): it is refused, and the
  // name used last still answers with its own id.
  await assert.rejects(client.acquire(''), (e) => e instanceof InvalidArgument && e.detail.kind === 'empty-name');
  const after = await client.acquire(`${base}-0`, { autoRenew: false });
  assert.equal(await command(s.port, 'GET', key(`${base}-0`)), after.token);
  await after.release();
});

test('a refused name leaves the registered names alone; only a full table is emptied', async () => {
  const [s] = await start();
  const session = await handshaken(s);
  const slots = new Slots(session);
  const refusal = (call) => { try { call(); } catch (error) { return error; } return assert.fail('not refused'); };
  const base = unique('table'), first = slots.nameId(`${base}-a`), second = slots.nameId(`${base}-b`);
  for (const [bad, kind] of [['', 'empty-name'], ['control\u0001', 'name-control-byte']]) {
    const error = refusal(() => slots.nameId(bad));
    assert.deepEqual([error.tag, error.val.kind], ['invalid', kind]);
  }
  // Still registered, under their ids, in the engine (a forgotten name would get a new id) and here.
  assert.equal(session.register(`${base}-b`), second);
  assert.equal(session.register(`${base}-a`), first);
  assert.deepEqual([slots.nameId(`${base}-b`), slots.nameId(`${base}-a`)], [second, first]);
  // Filled to the engine's bound, the engine refuses a new name; the driver then forgets the
  // table once and registers the name, which the engine then knows.
  for (let i = 2; i < NAMES_PER_SESSION; i++) slots.nameId(`${base}-${i}`);
  const full = refusal(() => session.register(`${base}-full`));
  assert.deepEqual([full.tag, full.val.kind], ['invalid', 'other'], 'the engine\'s bound is NAMES_PER_SESSION, said with kind other');
  const fresh = slots.nameId(`${base}-full`);
  assert.equal(session.register(`${base}-full`), fresh);
  assert.equal(slots.nameId(`${base}-full`), fresh);
});

// A session whose one handshake is done, driven by hand (the engine builds no operation before).
async function handshaken(server) {
  const session = machines.open({ nodes: [server.url], fenced: false }, entropy());
  const handshake = session.connect(0, now());
  const socket = net.connect({ host: '127.0.0.1', port: server.port });
  await new Promise((resolve, reject) => {
    const step = () => {
      for (let out; (out = handshake.pollTransmit()); ) socket.write(out);
      const outcome = handshake.pollOutcome();
      if (outcome) (outcome.tag === 'ok' ? resolve : reject)(outcome.val);
    };
    socket.on('data', (bytes) => { handshake.handleInput(bytes, now()); step(); });
    step();
  });
  socket.destroy();
  return session;
}

// The reply a server gives an acquire's `SET NX PX` it grants: nil to `SET … NX GET` (what the
// engine sends to Redis >= 7.0 and Valkey), `+OK` to the plain form.
const grantFor = (step) => new TextEncoder().encode(
  Buffer.from(step).toString('latin1').includes('\r\n$3\r\nGET\r\n') ? '$-1\r\n' : '+OK\r\n');

test("the lean operation.feed scripts/build.js adds is in place and answers as jco's does", async () => {
  assert.equal(typeof leanFeed, 'function', "scripts/build.js found what the lean feed needs in this jco's output");
  const [s] = await start();
  const session = await handshaken(s);
  const lent = new Uint8Array([1]);
  const [viaLean, firstStep] = session.acquireStarted(unique('lean'), 0, now(), entropy(), lent);
  const [viaJco] = session.acquireStarted(unique('lean'), 0, now(), entropy(), lent);
  const reply = grantFor(firstStep);
  const shape = (bytes) => { const { outcome, owed } = decodeStep(bytes, null, () => {}); return { tag: outcome?.val.tag, token: outcome?.val.val.token.length, owed: [...owed] }; };
  assert.deepEqual(shape(leanFeed(viaLean, now(), 0, reply)), { tag: 'acquired', token: 32, owed: [0] });
  assert.deepEqual(shape(viaJco.feed(now(), 0, reply)), { tag: 'acquired', token: 32, owed: [0] });
  const at = now(); // over: both answer the same step, byte for byte (the lean one in a Node Buffer)
  assert.deepEqual([...leanFeed(viaLean, at, 0, reply)], [...viaJco.feed(at, 0, reply)]);
  viaLean[Symbol.dispose]();
  viaJco[Symbol.dispose]();
  assert.throws(() => leanFeed(viaLean, now(), 0, reply), /Not a valid "Operation" resource/);
});

test("the lean session-level flat calls scripts/build.js adds answer as jco's do, refusals included", async () => {
  for (const lean of [leanAcquireFlat, leanReleaseFlat, leanExtendFlat, leanFeedFlat, leanRegister]) assert.equal(typeof lean, 'function', "scripts/build.js found what it needs in this jco's output");
  const [s] = await start();
  const session = await handshaken(s);
  const name = unique('lean-slot'), id = leanRegister(session, name);
  assert.equal(session.register(name), id, 'one name, one id, whichever call registered it');
  const other = leanRegister(session, `${name}-é`); // UTF-8 lowered at its length: a name of its own
  assert.notEqual(other, id);
  assert.equal(session.register(`${name}-é`), other);
  const encode = (text) => new TextEncoder().encode(text), slotOf = (bytes) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(1, true);
  const shape = (bytes) => { const { outcome, owed } = decodeStep(bytes, null, () => {}); return { tag: outcome?.val.tag, owed: [...owed] }; };
  const [viaLean, viaJco] = [leanAcquireFlat(session, id, 0, now(), entropy(), 1), session.acquireFlat(id, 0, now(), entropy(), 1)];
  assert.notEqual(slotOf(viaLean), slotOf(viaJco));
  assert.deepEqual(shape(leanFeedFlat(session, slotOf(viaLean), now(), 0, grantFor(viaLean))), { tag: 'acquired', owed: [0] });
  assert.deepEqual(shape(session.feedFlat(slotOf(viaJco), now(), 0, grantFor(viaJco))), { tag: 'acquired', owed: [0] });
  // Over: both slots were freed with the outcome, and both calls answer nothing for them.
  assert.deepEqual([leanFeedFlat(session, slotOf(viaLean), now(), 0, encode(':1\r\n')).length, session.feedFlat(slotOf(viaJco), now(), 0, encode(':1\r\n')).length], [0, 0]);
  const released = leanReleaseFlat(session, id, encode('t'.repeat(32)), now(), entropy(), 1);
  assert.deepEqual(shape(session.feedFlat(slotOf(released), now(), 0, encode(':1\r\n'))), { tag: 'released', owed: [0] });
  const extended = leanExtendFlat(session, id, encode('t'.repeat(32)), 5_000, now(), entropy(), 1);
  const notHeld = decodeStep(leanFeedFlat(session, slotOf(extended), now(), 0, encode(':0\r\n')), { pollOutcome: () => session.outcomeFlat(slotOf(extended)) }, () => {});
  assert.deepEqual([notHeld.outcome.val.tag, [...notHeld.owed]], ['not-held', [0]]);
  // Refused input changes nothing, so the lean call's second, jco-made call throws what jco throws.
  const refusal = (call) => { try { call(); } catch (error) { return error; } return assert.fail('not refused'); };
  const stale = id ^ 0x10000, short = entropy().subarray(0, 4);
  assert.deepEqual(refusal(() => leanAcquireFlat(session, stale, 0, now(), entropy(), 1)), refusal(() => session.acquireFlat(stale, 0, now(), entropy(), 1)));
  assert.deepEqual(refusal(() => leanReleaseFlat(session, id, encode('t'), now(), entropy(), 1)).val.kind, 'bad-token');
  assert.equal(refusal(() => leanAcquireFlat(session, id, 0, now(), short, 1)).tag, 'invalid');
  assert.deepEqual(refusal(() => leanExtendFlat(session, id, encode('t'), 5_000, now(), entropy(), 1)).val.kind, 'bad-token');
  for (const bad of ['', 'control\u0001', 'x'.repeat(2000)]) assert.deepEqual(refusal(() => leanRegister(session, bad)), refusal(() => session.register(bad)));
});

// A waiter's BLPOP blocks up to the core's retry cap (distlock_core::RetryPolicy, 500 ms)
// at a time; the case below needs a request timeout under that, so each BLPOP outlasts it.
const BLOCKING_SPAN_MS = 500;
const UNDER_THE_SPAN_MS = 400;
test('a wait blocked past the request timeout is not a silent node', async () => {
  const [s] = await start();
  const a = await connect(s.url);
  // The handshake shares the short request timeout, which a loaded machine can miss: that
  // connect is tried again, as it is not what this case is about.
  let b;
  for (let tries = 1; !b; tries++) {
    try { b = await connect(s.url, { requestTimeout: UNDER_THE_SPAN_MS }); } catch (e) { if (!(e instanceof Unavailable) || tries === 5) throw e; }
  }
  const name = unique('long-wait');
  const lease = await a.acquire(name);
  const controller = new AbortController();
  const waiting = b.acquire(name, { wait: 60_000, signal: controller.signal });
  let ended = null;
  waiting.then(() => { ended = 'acquired'; }, (e) => { ended = e; });
  // The ids of the connections the server holds blocked in a BLPOP.
  const blockedIds = async () => String(await command(s.port, 'CLIENT', 'LIST', 'TYPE', 'normal')).split('\n')
    .filter((line) => / cmd=blpop /.test(line) && / flags=\S*b/.test(line)).map((line) => /\bid=(\d+)/.exec(line)[1]);
  // The server blocks the waiter longer than the request timeout: that silence is the
  // command's, not a frozen node's. For several BLPOPs from when the block is seen (the
  // property is about that time passing, not a race with it), the wait must go on, on the
  // same connection: one given up as silent would have been closed.
  let first = [];
  while (ended === null && (first = await blockedIds()).length === 0) await new Promise((r) => setTimeout(r, 10));
  assert.equal(ended, null, 'the wait ended before it blocked');
  const seen = now();
  while (now() - seen < 4 * BLOCKING_SPAN_MS) await new Promise((r) => setTimeout(r, 20));
  assert.equal(ended, null, 'the blocked wait ended on its own');
  let last = [];
  while ((last = await blockedIds()).length === 0) await new Promise((r) => setTimeout(r, 10)); // between two BLPOPs
  assert.deepEqual(last, first, 'the waiter blocks on the connection it blocked on first');
  controller.abort(new Error('stop waiting'));
  await assert.rejects(waiting, /stop waiting/);
  await lease.release();
  const taken = await b.tryAcquire(name, { autoRenew: false });
  await taken.release();
});

test('rediss:// locks over TLS, trusting the CA given in the tls option', async () => {
  const tls = makeCertificates();
  const s = await RedisServer.start(tls);
  servers.push(s);
  await rejectsWith(Client.connect(s.url, { requestTimeout: 500 }), Unavailable); // the system's CAs do not know it
  const client = await connect(s.url, { tls: { ca: readFileSync(tls.ca) } });
  const name = unique('tls');
  const lease = await client.acquire(name, { autoRenew: false });
  assert.equal(await commandOver(s.port, tls, 'GET', key(name)), lease.token);
  await lease.release();
  assert.equal(await commandOver(s.port, tls, 'GET', key(name)), null);
});
