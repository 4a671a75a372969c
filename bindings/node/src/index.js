// distlock for Node.js: `Client.connect(urls)`, `await using lease = await client.acquire(name)`.
// The lock protocol is the engine component's (generated/engine.js, transpiled from
// wasm/engine by `npm run build`); src/driver.js moves its bytes over node:net/node:tls.
import { machines } from '../generated/engine.js';
import { Pool, now, entropy } from './driver.js';
import { Slots } from './slots.js';
import { engineCall, fromEngine, LockLost } from './errors.js';

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

  // `make(session)` builds the operation; `started(slots, lent)`, where given, builds it in a
  // session slot and takes its first step in one engine call (the fast path of an uncontended lock).
  async #run(pool, make, signal, started) {
    let outcome;
    try {
      // The engine builds operations for the servers the handshakes found: connect first
      // (once; a connected pool skips the await).
      if (!pool.connected) await pool.ready();
      outcome = await pool.run(() => make(pool.session), signal, started && ((lent) => started(pool.slots, lent)));
    } catch (error) {
      throw error && typeof error === 'object' && 'tag' in error ? fromEngine(error) : error;
    }
    if (outcome.tag === 'err') {
      if (outcome.val.tag === 'cancelled') throw signal?.reason ?? new DOMException('aborted', 'AbortError');
      throw fromEngine(outcome.val);
    }
    return outcome.val;
  }

  /**
   * Acquires lock `name`. Options: `wait` (ms to wait for a holder to let go; 0: one
   * attempt), `ttl`, `fenced`, `fair` (queue in arrival order; the release hands the lock to
   * the first live waiter; one node only; every client of the lock must use it), `autoRenew`
   * (default true), `signal` (an AbortSignal).
   * Rejects with `NotAcquired`, `Unavailable`, `InvalidArgument`.
   */
  async acquire(name, { wait = 0, ttl, fenced, fair, autoRenew = true, signal } = {}) {
    const pool = this.#pool(ttl, fenced, fair);
    const { val } = await this.#run(pool, (s) => s.acquire(name, wait, now(), entropy()), signal,
      (slots, lent) => slots.acquire(name, wait, now(), entropy(), lent));
    return new Lease(this, pool, name, val, autoRenew);
  }

  /** Acquires lock `name` only if it is free right now. */
  tryAcquire(name, options = {}) { return this.acquire(name, { ...options, wait: 0 }); }

  /** Releases lock `name` held by `token` (from any process that has it). */
  async release(name, token) {
    await this.#run(this.#pool(), (s) => s.release(name, token, now(), entropy()), undefined,
      (slots, lent) => slots.release(name, token, now(), entropy(), lent));
  }

  /** Extends lock `name` held by `token` to `ttl` ms from now; resolves with the new `validUntil`. */
  async extend(name, token, ttl) {
    return (await this.#run(this.#pool(), (s) => s.extend(name, token, ttl, now(), entropy()))).val.validUntil;
  }

  /** What the nodes say about lock `name`: `{ verdict: {tag: 'held', val: token} | {tag: 'free'} | {tag: 'unknown'}, nodes }`. */
  async status(name) {
    return (await this.#run(this.#pool(), (s) => s.status(name, now()))).val;
  }

  /** @internal */
  runOn(pool, make, signal, started) { return this.#run(pool, make, signal, started); }

  /** Closes every connection. Leases not released expire at their TTL. */
  close() { for (const pool of this.#pools.values()) pool.close(); this.#pools.clear(); this.#default = null; }
}

/** A held lock. `signal` fires (with a `LockLost` reason) when the lease is lost. */
export class Lease {
  // The AbortController is made on the first read of `signal` (or on loss): most leases are
  // released without anyone asking, and making one costs more than the rest of the lease.
  #client; #pool; #renewal; #timer; #controller = null; #released = false;
  constructor(client, pool, name, lease, autoRenew) {
    this.name = name; this.token = lease.token; this.fence = lease.fence; this.validUntil = lease.validUntil;
    this.#client = client; this.#pool = pool;
    if (autoRenew) { this.#renewal = engineCall(() => pool.session.renewal(name, lease, entropy())); this.#schedule(); }
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

  /** Releases the lock. Rejects with `LockLost` when it was no longer held. */
  async release() {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    await this.#client.runOn(this.#pool, (s) => s.release(this.name, this.token, now(), entropy()), undefined,
      (slots, lent) => slots.release(this.name, this.token, now(), entropy(), lent));
  }

  /** `await using lease = …`: releases at the end of the block (errors are swallowed: a lost lease needs no release). */
  async [Symbol.asyncDispose]() { await this.release().catch(() => {}); }
}
