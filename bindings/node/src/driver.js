// The glue between the engine component and node:net/node:tls: sockets, timers, the clock
// and entropy. Every decision (which node to connect, retries, quorum, what a reply means)
// is the engine's; this file only moves bytes and honours the deadlines the machines name.
import net from 'node:net';
import tls from 'node:tls';
import { randomFillSync } from 'node:crypto';

export const now = () => performance.now();
export const entropy = () => randomFillSync(new Uint8Array(24));
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
  run(op, signal) {
    return new Promise((resolve) => {
      const conns = [];
      let timer, done = false;
      const step = (events) => { // one engine call per event: what happened in, what to do out
        if (done) return;
        clearTimeout(timer);
        const { transmits, timeout, outcome, connections } = op.step(now(), events);
        for (const { node, bytes } of transmits) conns[node]?.write(bytes);
        if (outcome) return finish(outcome, connections);
        if (timeout !== undefined) timer = after(timeout, () => step([]));
      };
      const runner = {
        input: (node, bytes) => step([{ tag: 'data', val: { node, bytes } }]),
        lost: (node) => { conns[node] = null; step([{ tag: 'disconnect', val: node }]); },
      };
      const finish = (outcome, connections) => {
        done = true; signal?.removeEventListener('abort', abort);
        // keep(owed): pooled; close (out of step) or silent (frozen: the session backs it off).
        conns.forEach((c, node) => { if (!c) return; const fate = connections[node]; if (fate?.tag === 'keep') this.give(c, fate.val); else c.destroy(); });
        op[Symbol.dispose]?.(); resolve(outcome);
      };
      const abort = () => { op.cancel(now()); step([]); };
      signal?.addEventListener('abort', abort, { once: true });
      const events = [];
      for (let node = 0; node < this.idle.length; node++) {
        let conn = this.idle[node].pop();
        if (conn?.owed && !op.discardReplies(node, conn.owed)) { conn.destroy(); conn = null; }
        conn ??= this.open(node);
        if (conn) { conn.runner = runner; conns[node] = conn; } else events.push({ tag: 'disconnect', val: node });
        for (const bytes of conn?.idle.splice(0) ?? []) events.push({ tag: 'data', val: { node, bytes } });
      }
      if (signal?.aborted) { op.cancel(now()); }
      step(events);
    });
  }
}
