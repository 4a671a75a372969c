// The glue between the engine component and node:net/node:tls: sockets, timers, the clock
// and entropy. Every decision (which node to connect, retries, quorum, what a reply means)
// is the engine's; this file only moves bytes and honours the deadlines the machines name.
import net from 'node:net';
import tls from 'node:tls';
import { randomFillSync } from 'node:crypto';
import { decodeStep } from './flat.js';

export const now = () => performance.now();
// Random bytes for the engine (24: a token and retry jitter), cut from a pool filled by the
// CSPRNG 4 KiB at a time: one `randomFillSync` call costs about 3 us, more than the cut.
const ENTROPY = 24, POOL = 4096;
let pool = new Uint8Array(0), taken = 0;
export const entropy = () => {
  if (taken + ENTROPY > pool.length) { pool = randomFillSync(new Uint8Array(POOL)); taken = 0; }
  return pool.subarray(taken, (taken += ENTROPY));
};
const after = (at, fn) => setTimeout(fn, Math.max(0, at - now()));

// One socket to one node: its handshake first, then lent to one operation at a time.
class Conn {
  constructor(pool, node, handshake) {
    Object.assign(this, { pool, node, handshake, runner: null, owed: 0, idle: [], queued: [], alive: true });
    const { host, port, tls: secure } = pool.session.endpoint(node);
    // TLS (`rediss://`): the system's CAs, or those of the client's `tls` option (`{ ca }`).
    this.socket = secure ? tls.connect({ ...pool.tls, host, port, servername: host }) : net.connect({ host, port });
    this.socket.setNoDelay(true);
    this.socket.on('data', (bytes) => this.input(bytes));
    this.socket.on('error', () => {}); // 'close' follows
    this.socket.on('close', () => this.closed());
    this.step();
  }
  input(bytes) {
    if (this.handshake) { this.handshake.handleInput(bytes, now()); this.step(); }
    else if (this.runner) this.runner.input(this.node, bytes);
    else this.idle.push(bytes); // owed to the last operation: the next one skips it
  }
  step() { // sends what the handshake asks; on its end, the socket is ready or closed
    clearTimeout(this.timer);
    for (let out; (out = this.handshake.pollTransmit()); ) this.socket.write(out);
    const outcome = this.handshake.pollOutcome();
    if (!outcome) { const at = this.handshake.pollTimeout(); if (at !== undefined) this.timer = after(at, () => { this.handshake.handleTimeout(now()); this.step(); }); return; }
    this.handshake = null;
    if (outcome.tag === 'err') { this.failed = true; return this.destroy(); }
    for (const bytes of this.queued.splice(0)) this.socket.write(bytes);
    if (!this.runner) this.pool.give(this, 0);
  }
  write(bytes) { if (this.handshake) this.queued.push(bytes); else this.socket.write(bytes); }
  closed() {
    if (!this.alive) return;
    this.alive = false; clearTimeout(this.timer);
    if (this.handshake) { this.handshake.handleDisconnect(now()); this.handshake = null; }
    else if (!this.failed) this.pool.session.disconnected(this.node, now());
    this.pool.forget(this);
    this.runner?.lost(this.node);
  }
  destroy() { this.socket.destroy(); this.closed(); }
}

// The connections of one session, per node; `run` drives one operation to its outcome.
export class Pool {
  constructor(session, tls) { Object.assign(this, { session, tls, idle: [...Array(session.nodes())].map(() => []) }); }
  warm() { for (let node; (node = this.session.pollConnect(now())) !== undefined; ) this.open(node); }
  open(node) { const hs = this.session.connect(node, now()); return hs && new Conn(this, node, hs); }
  give(conn, owed) { conn.runner = null; conn.owed = owed; if (conn.alive && !this.idle[conn.node].includes(conn)) this.idle[conn.node].push(conn); this.onChange?.(); }
  forget(conn) { this.idle[conn.node] = this.idle[conn.node].filter((c) => c !== conn); this.onChange?.(); }
  close() { for (const conns of this.idle) for (const c of conns.splice(0)) c.socket.destroy(); }
  // Resolves once the session's first connect reached a majority (the engine builds no
  // operation before); rejects with the engine's error when too few answered. Once only:
  // later operations reconnect through `run`.
  ready() {
    this.connecting ??= new Promise((resolve, reject) => {
      let timer;
      const check = () => { // on every connection event, and at the session's deadlines
        clearTimeout(timer);
        this.session.handleTimeout(now());
        const outcome = this.session.connectOutcome();
        if (!outcome) return void (timer = setTimeout(check, Math.max(1, (this.session.pollTimeout() ?? now() + 1000) - now())));
        this.onChange = null;
        if (outcome.tag === 'err') { this.connecting = null; reject(outcome.val); } else resolve();
      };
      this.onChange = check;
      this.warm();
      check();
    });
    return this.connecting;
  }
  // Drives one operation to its outcome over the engine's flat calls (src/flat.js): `build()`
  // makes the operation; `started(lent)`, where given, makes it and takes its first step in
  // one call (used unless a pooled connection still owes an earlier operation replies).
  run(build, signal, started) {
    return new Promise((resolve) => {
      const conns = [], lent = new Uint8Array(this.idle.length), inbox = [];
      let timer, done = false, op, first, owing = false;
      for (let node = 0; node < this.idle.length; node++) {
        const conn = this.idle[node].pop() ?? this.open(node);
        if (!conn) continue;
        conns[node] = conn; lent[node] = 1; owing ||= conn.owed > 0;
        for (const bytes of conn.idle.splice(0)) inbox.push([node, bytes]);
      }
      const runner = {
        input: (node, bytes) => handle(op.feed(now(), node, bytes)),
        lost: (node) => { conns[node] = null; handle(op.lose(now(), node)); },
      };
      const handle = (bytes) => { // one engine call per event: what happened in, what to do out
        if (done) return;
        clearTimeout(timer);
        const { transmits, timeout, outcome, connections } = decodeStep(bytes, op);
        for (const { node, bytes: out } of transmits) conns[node]?.write(out);
        if (outcome) return finish(outcome, connections);
        if (timeout !== undefined) timer = after(timeout, () => handle(op.tick(now())));
      };
      const finish = (outcome, connections) => {
        done = true; signal?.removeEventListener('abort', abort);
        // keep(owed): pooled; close (out of step) or silent (frozen: the session backs it off).
        conns.forEach((c, node) => { if (!c) return; const fate = connections[node]; if (fate?.tag === 'keep') this.give(c, fate.val); else c.destroy(); });
        op[Symbol.dispose]?.(); resolve(outcome);
      };
      const abort = () => { op.cancel(now()); handle(op.tick(now())); };
      try {
        if (started && !owing) [op, first] = started(lent);
        else {
          op = build();
          conns.forEach((conn, node) => {
            if (!conn?.owed || op.discardReplies(node, conn.owed)) return;
            conn.destroy(); // cannot skip what it owes (a status): another connection
            conns[node] = this.open(node); lent[node] = conns[node] ? 1 : 0;
          });
          first = op.start(now(), lent);
        }
      } catch (error) { // not built: the connections go back as they were
        conns.forEach((c) => c && this.give(c, c.owed));
        throw error;
      }
      conns.forEach((c) => { if (c) c.runner = runner; });
      signal?.addEventListener('abort', abort, { once: true });
      if (signal?.aborted) op.cancel(now());
      handle(first);
      for (const [node, bytes] of inbox) handle(op.feed(now(), node, bytes));
    });
  }
}
