// distlock for Node.js: `Client.connect(urls)`, `await using lease = await client.acquire(name)`
// (a semaphore's permit: `acquire(name, { limit })`; a read-write lock: `readLock`/`writeLock`;
// the dogpile helper: `getOrCompute(key, fn, { ttl })`).
// The lock protocol is the engine component's (generated/engine.js, transpiled from
// wasm/engine by `npm run build`); src/driver.js moves its bytes over node:net/node:tls.
import { machines } from '../generated/engine.js';
import { Pool, now, entropy } from './driver.js';
import { Slots } from './slots.js';
import { engineCall, fromEngine, InvalidArgument, LockLost, NotAcquired } from './errors.js';

export * from './errors.js';

// `await using` syntax needs Node >= 24 (or a transpiler); an older Node gets the symbol here when it lacks
// it, and its users write try/finally.
if (!Symbol.asyncDispose) Object.defineProperty(Symbol, 'asyncDispose', { value: Symbol.for('nodejs.asyncDispose') });

/** A handle on the lock servers: one session (and connection pool) per TTL/fencing/fair triple. */
export class Client {
  #urls; #options; #pools = new Map(); #default = null;
  constructor(urls, options) { this.#urls = urls; this.#options = options; }

  /**
   * Connects to `urls` (`redis://[user:pass@]host:port[/db]`, `rediss://` for TLS; several:
   * Redlock). Resolves once a majority is ready; rejects with `Unavailable` otherwise.
   * Options: `ttl` (ms, 30000), `fenced`, `fair`, `requestTimeout` (ms, 1000), `keyPrefix`, `tls`
   * (node:tls options for `rediss://` nodes, such as `{ ca }`; default: the system's CAs),
   * `noScripts` (send no script: native commands only, Valkey 9.0+ / Redis 8.4+).
   */
  static async connect(urls, options = {}) {
    const client = new Client(typeof urls === 'string' ? [urls] : [...urls], options);
    const pool = client.#pool(options.ttl, options.fenced, options.fair);
    try {
      await pool.ready();
    } catch (error) {
      client.close();
      throw fromEngine(error);
    }
    return client;
  }

  #pool(ttl, fenced, fair) {
    // The client's own options (most calls): no key to build.
    if (ttl === undefined && fenced === undefined && fair === undefined && this.#default) return this.#default;
    ttl ??= this.#options.ttl; fenced ??= this.#options.fenced ?? false; fair ??= this.#options.fair ?? false;
    const key = `${ttl}/${fenced}/${fair}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      const session = engineCall(() => machines.open({
        nodes: this.#urls, keyPrefix: this.#options.keyPrefix, ttlMs: ttl, fenced,
        requestTimeoutMs: this.#options.requestTimeout, fair, noScripts: this.#options.noScripts,
      }, entropy()));
      pool = new Pool(session, this.#options.tls);
      pool.slots = new Slots(session); // the slotted acquire and release (src/slots.js)
      this.#pools.set(key, pool);
    }
    if (key === `${this.#options.ttl}/${this.#options.fenced ?? false}/${this.#options.fair ?? false}`) this.#default = pool;
    return pool;
  }

  // `make(session)` builds the operation; `started(lent)`, where given, builds it in a
  // session slot (`pool.slots`) and takes its first step in one engine call (the fast path of an uncontended
  // lock); `then(value)`, where given, makes what the call resolves with from the outcome's
  // value. Answers the operation's one Promise (no `async` layer on the hot path): the driver
  // settles it from the step that carries the outcome.
  #run(pool, make, signal, started, then) {
    const finish = (outcome) => {
      if (outcome.tag === 'err') throw failure(outcome.val, signal, pool);
      return then ? then(outcome.val) : outcome.val;
    };
    const run = () => pool.run(() => make(pool.session), signal, started, finish);
    // The engine builds operations for the servers the handshakes found: connect first (once;
    // a connected pool goes straight on).
    return pool.connected ? run() : pool.ready().then(run, (error) => { throw failure(error); });
  }

  /**
   * Acquires lock `name`. Options: `wait` (ms to wait for a holder to let go; 0: one
   * attempt), `ttl`, `fenced`, `fair` (queue in arrival order; the release hands the lock to
   * the first live waiter; one node only; every client of the lock must use it), `autoRenew`
   * (default true), `signal` (an AbortSignal), `limit` (take one of `limit` permits of the
   * semaphore `name` instead: at most `limit` holders at once, each lease a permit of its own;
   * one node only; every client of the semaphore must pass the same limit).
   * Rejects with `NotAcquired`, `Unavailable`, `InvalidArgument` (a `limit` of 0 or above the
   * engine's bound: kind `bad-limit`), `ServerError` (a name that is another kind of lock:
   * `wrong-type`; another limit while a permit lives: `wrong-limit`).
   */
  acquire(name, options = {}) {
    try { // what goes wrong before the operation runs rejects too, as an `async` call's would
      const { wait = 0, ttl, fenced, fair, autoRenew = true, signal, limit, mode } = options;
      const pool = this.#pool(ttl, fenced, fair), shape = shapeOf(limit, mode);
      const lease = ({ val }) => new Lease(this, pool, name, val, autoRenew, shape);
      return shape
        ? this.#run(pool, (s) => s.acquireShaped(name, shape, wait, now(), entropy()), signal, undefined, lease)
        : this.#run(pool, (s) => s.acquire(name, wait, now(), entropy()), signal,
          (lent) => pool.slots.acquire(name, wait, now(), entropy(), lent), lease);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Acquires every name in `names` at once, all or nothing, under one token: one lease for
   * the set (released, extended and renewed together; fenced, one fence above every name's).
   * A held name takes nothing. Each name is held as `acquire` holds it, so a plain lock of one
   * of the names excludes the set. The options of `acquire` but `fair`, `limit` and `mode`.
   * The engine sorts the names and refuses a bad set with `InvalidArgument`: kind `no-names`,
   * `too-many-names` (above 16), `duplicate-name`, a bad name's kind, `multi-unsupported` (a
   * client connected with `fair`).
   */
  async acquireMany(names, { wait = 0, ttl, fenced, autoRenew = true, signal } = {}) {
    const pool = this.#pool(ttl, fenced), set = [...names];
    const { val } = await this.#run(pool, (s) => s.acquireMany(set, wait, now(), entropy()), signal);
    return new Lease(this, pool, set.join(', '), val, autoRenew, { tag: 'many', val: set });
  }

  /** Releases every name in `names` held by `token` (the set `acquireMany` took, in any order). */
  async releaseMany(names, token) {
    await this.#run(this.#pool(), (s) => s.releaseMany([...names], token, now(), entropy()));
  }

  /** Extends every name in `names` held by `token` to `ttl` ms from now, all or none; resolves with the new `validUntil`. */
  async extendMany(names, token, ttl) {
    return (await this.#run(this.#pool(), (s) => s.extendMany([...names], token, ttl, now(), entropy()))).val.validUntil;
  }

  /** Acquires lock `name` (or a permit, with `limit`) only if it is free right now. */
  tryAcquire(name, options = {}) { return this.acquire(name, { ...options, wait: 0 }); }

  /**
   * Takes a read hold of the read-write lock `name`: readers share it, never beside a writer,
   * and a waiting writer goes first. The options of `acquire` but `fair` and `limit` (a
   * read-write lock is never fair: a client connected with `fair` is refused with
   * `InvalidArgument` of kind `rw-lock-unsupported`). One node only.
   */
  readLock(name, options = {}) { return this.acquire(name, { ...options, mode: 'read' }); }

  /** Takes the write hold of the read-write lock `name`: no reader, no other writer (see `readLock`). */
  writeLock(name, options = {}) { return this.acquire(name, { ...options, mode: 'write' }); }

  /**
   * Releases lock `name` held by `token` (from any process that has it); a semaphore's permit
   * with `{ limit }`, a read-write lock's hold with `{ mode: 'read' | 'write' }`.
   */
  async release(name, token, { limit, mode } = {}) {
    const shape = shapeOf(limit, mode), pool = this.#pool();
    await (shape ? this.#run(pool, (s) => s.releaseShaped(name, shape, token, now(), entropy()))
      : this.#run(pool, (s) => s.release(name, token, now(), entropy()), undefined,
        (lent) => pool.slots.release(name, token, now(), entropy(), lent)));
  }

  /**
   * Extends lock `name` held by `token` to `ttl` ms from now (a permit or hold: `{ limit }` or
   * `{ mode }`, as `release`); resolves with the new `validUntil`.
   */
  async extend(name, token, ttl, { limit, mode } = {}) {
    const shape = shapeOf(limit, mode), pool = this.#pool();
    if (shape) return (await this.#run(pool, (s) => s.extendShaped(name, shape, token, ttl, now(), entropy()))).val.validUntil;
    return (await this.#run(pool, (s) => s.extend(name, token, ttl, now(), entropy()), undefined,
      (lent) => pool.slots.extend(name, token, ttl, now(), entropy(), lent))).val.validUntil;
  }

  /**
   * What the nodes say about lock `name`: `{ verdict, nodes }`. `verdict` is `{tag: 'held',
   * val: token}`, `{tag: 'free'}`, `{tag: 'unknown'}` (too few nodes read: never free) or
   * `{tag: 'shared'}` (a semaphore's permits or a read-write lock's holds live). `nodes[i]` is
   * `{tag: 'ok', val: reading}` or `{tag: 'err', val: failure}`; a reading has `holder`,
   * `ttlMs`, `fence`, `queued` (a BigInt: the waiters queued on the name, the fair mutex's,
   * fair semaphore's or waiting writers of the kind holding it, every kind's when free),
   * `permits` (`{ limit, holders: [{ token, ttlMs }] }`) and `rw` (`{ writer, readers }`).
   */
  async status(name) {
    return (await this.#run(this.#pool(), (s) => s.status(name, now()))).val;
  }

  /**
   * The value cached under `key`, or the one `fn` computes, stored for `ttl` ms (required).
   * Exactly one caller at a time runs `fn`, under the lock `key` (its TTL `lockTtl`, default
   * the client's, renewed while `fn` runs; `fn` gets an AbortSignal that fires if that lock
   * is lost); the others wait up to `wait` ms (default 10000) for its value, woken by its
   * store, without ever taking the lock. When `fn` throws, the lock is given up, one waiter
   * computes next, and the error is rethrown here. `encode`/`decode` turn a value into the
   * stored bytes (a string or Uint8Array) and back: JSON by default. `signal` aborts the wait.
   * One node only: several nodes, a fenced or fair client reject with `InvalidArgument` of kind
   * `compute-unsupported`; a value over the engine's bound `value-too-long`; a `ttl` of 0
   * `bad-ttl`. Rejects with `NotAcquired` when the wait ran out while another computed, and
   * `LockLost` when the lock was lost while `fn` ran (nothing was stored).
   */
  async getOrCompute(key, fn, { ttl, wait = 10_000, lockTtl, signal, encode = JSON.stringify, decode = decodeJson } = {}) {
    if (!Number.isInteger(ttl)) throw new InvalidArgument('getOrCompute needs { ttl }: how long the value lives, in ms', 'invalid');
    const pool = this.#pool(lockTtl);
    let fetched;
    try {
      fetched = (await this.#run(pool, (s) => s.getOrLock(key, wait, now(), entropy()), signal)).val;
    } catch (error) {
      if (!(error instanceof NotAcquired)) throw error;
      throw new NotAcquired(`the value of ${key} was not computed within ${wait} ms (another caller is computing it)`, error.code, error.detail);
    }
    if (fetched.tag === 'value') return decode(fetched.val);
    const lease = new Lease(this, pool, key, fetched.val, true); // renewed while `fn` runs
    let value, bytes;
    try {
      value = await fn(lease.signal);
      bytes = encoded(encode(value));
    } catch (error) {
      lease.stopRenewal();
      await this.#giveUp(pool, key, lease.token);
      throw error;
    }
    lease.stopRenewal();
    try {
      await this.#run(pool, (s) => s.finishCompute(key, lease.token, bytes, ttl, now()));
    } catch (error) {
      if (error instanceof InvalidArgument) await this.#giveUp(pool, key, lease.token); // refused before anything was sent
      if (!(error instanceof LockLost)) throw error;
      throw new LockLost(`the computation's lock of ${key} was lost while computing; the value was not stored`, error.code, error.detail);
    }
    return value;
  }

  // Gives a failed computation's lock up, waking one waiter; a failure here leaves the lock to
  // expire at its TTL, when the waiters take over anyway (the caller's error matters more).
  async #giveUp(pool, key, token) {
    await this.#run(pool, (s) => s.abandonCompute(key, token, now())).catch(() => {});
  }

  /** @internal */
  runOn(pool, make, signal, started, then) { return this.#run(pool, make, signal, started, then); }

  /**
   * Gives up every call in flight (a waiting `acquire` rejects at once with an `AbortError`,
   * "the client was closed") and closes every connection. Leases not released expire at their TTL.
   */
  close() { for (const pool of this.#pools.values()) pool.close(); this.#pools.clear(); this.#default = null; }
}

// What an operation's failure throws: the abort's reason for a cancelled one (an `AbortError`
// saying so when `client.close()` gave it up), the typed error for the engine's, anything else
// as it is.
function failure(error, signal, pool) {
  if (error?.tag === 'cancelled') return signal?.reason ?? new DOMException(pool?.closed ? 'the client was closed' : 'aborted', 'AbortError');
  return error && typeof error === 'object' && 'tag' in error ? fromEngine(error) : error;
}
const nothing = () => undefined;

const utf8 = new TextDecoder();
const decodeJson = (bytes) => JSON.parse(utf8.decode(bytes));
const utf8Encoder = new TextEncoder();

/** What a `getOrCompute` `encode` made, as the bytes to store. */
function encoded(data) {
  if (typeof data === 'string') return utf8Encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  throw new InvalidArgument(`encode must return a string or a Uint8Array, not ${typeof data}`, 'invalid');
}

/**
 * The engine's `shape` of a semaphore's permit (`limit`) or a read-write lock's hold (`mode`);
 * `undefined` for the lock itself. The engine checks the values (a bad limit is `bad-limit`).
 */
function shapeOf(limit, mode) {
  if (limit !== undefined && mode !== undefined) throw new InvalidArgument('a lease is a permit (limit) or a read-write hold (mode), not both', 'invalid');
  if (limit !== undefined) return { tag: 'semaphore', val: { limit, fair: undefined } };
  if (mode === undefined) return undefined;
  if (mode !== 'read' && mode !== 'write') throw new InvalidArgument(`mode must be 'read' or 'write', not ${mode}`, 'invalid');
  return { tag: mode };
}

// A lease's engine calls by its shape: `undefined` for the lock itself, a `shape` of the engine,
// or `{ tag: 'many', val: names }` for a multi-name lock (which the engine's calls of their own take).
function renewalOf(session, name, shape, lease) {
  if (shape?.tag === 'many') return session.renewalMany(shape.val, lease, entropy());
  return shape ? session.renewalShaped(name, shape, lease, entropy()) : session.renewal(name, lease, entropy());
}
function releaseOf(session, name, shape, token) {
  if (shape?.tag === 'many') return session.releaseMany(shape.val, token, now(), entropy());
  return session.releaseShaped(name, shape, token, now(), entropy());
}

/**
 * A held lock, permit, read-write hold or set of names (`names`: the set, sorted as given;
 * `name`: the names joined, for messages). `signal` fires (with a `LockLost` reason) when the
 * lease is lost.
 */
export class Lease {
  // The AbortController is made on the first read of `signal` (or on loss): most leases are
  // released without anyone asking, and making one costs more than the rest of the lease.
  #client; #pool; #renewal; #timer; #controller = null; #released = false; #shape;
  constructor(client, pool, name, lease, autoRenew, shape) {
    this.name = name; this.token = lease.token; this.fence = lease.fence; this.validUntil = lease.validUntil;
    this.#client = client; this.#pool = pool; this.#shape = shape;
    if (shape?.tag === 'many') this.names = shape.val;
    if (autoRenew) {
      this.#renewal = engineCall(() => renewalOf(pool.session, name, shape, lease));
      this.#schedule();
    }
  }

  /** An AbortSignal that fires when the lease is lost; its reason is a `LockLost`. */
  get signal() { return (this.#controller ??= new AbortController()).signal; }
  /** Milliseconds the holder may still act as the owner. */
  get validity() { return this.#released ? 0 : Math.max(0, this.validUntil - now()); }

  #schedule() {
    const at = this.#renewal.pollTimeout();
    if (at === undefined || this.#released) return;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, at - now()));
    this.#timer.unref?.();
  }

  async #tick() {
    this.#renewal.handleTimeout(now());
    // An extend's outcome can raise the next event (lost): poll until there is none.
    for (let event; (event = this.#renewal.pollEvent(now(), entropy())); ) {
      if (event.tag === 'lost') {
        this.validUntil = 0;
        return (this.#controller ??= new AbortController()).abort(new LockLost(`lease of ${this.name} lost (${event.val})`, event.val));
      }
      await this.#pool.run(() => event.val); // the renewal hears the extend's outcome itself
      if (this.#released) return;
    }
    this.validUntil = this.#renewal.validUntil();
    this.#schedule();
  }

  /** Extends the lease to `ttl` ms from now (a set: every name, all or none); resolves with the new `validUntil`. */
  async extend(ttl) {
    const shape = this.#shape, many = shape?.tag === 'many';
    const make = many ? (s) => s.extendMany(shape.val, this.token, ttl, now(), entropy())
      : shape ? (s) => s.extendShaped(this.name, shape, this.token, ttl, now(), entropy())
        : (s) => s.extend(this.name, this.token, ttl, now(), entropy());
    const started = shape ? undefined : (lent) => this.#pool.slots.extend(this.name, this.token, ttl, now(), entropy(), lent);
    return (this.validUntil = (await this.#client.runOn(this.#pool, make, undefined, started)).val.validUntil);
  }

  /** @internal Stops renewing (no I/O): the lease lives until its TTL unless released. */
  stopRenewal() { this.#released = true; clearTimeout(this.#timer); }

  /** Releases the lock. Rejects with `LockLost` when it was no longer held. */
  release() {
    if (this.#released) return Promise.resolve();
    this.#released = true;
    clearTimeout(this.#timer);
    const shape = this.#shape, { name, token } = this;
    if (shape) return this.#client.runOn(this.#pool, (s) => releaseOf(s, name, shape, token), undefined, undefined, nothing);
    return this.#client.runOn(this.#pool, (s) => s.release(name, token, now(), entropy()), undefined,
      (lent) => this.#pool.slots.release(name, token, now(), entropy(), lent), nothing);
  }

  /** `await using lease = …`: releases at the end of the block (errors are swallowed: a lost lease needs no release). */
  async [Symbol.asyncDispose]() { await this.release().catch(() => {}); }
}
