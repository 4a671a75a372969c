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
let random = new Uint8Array(0), taken = 0;
export const entropy = () => {
  if (taken + 24 > random.length) { random = randomFillSync(new Uint8Array(4096)); taken = 0; }
  return random.subarray(taken, (taken += 24));
};

// One socket to one node: its handshake first, then lent to one operation (`run`) at a time.
class Conn {
  constructor(pool, node, handshake) {
    Object.assign(this, { pool, node, handshake, run: null, owed: 0, idle: [], queued: [], alive: true });
    const { host, port, tls: secure } = pool.session.endpoint(node);
    // TLS (`rediss://`): the system's CAs, or those of the client's `tls` option (`{ ca }`).
    this.socket = secure ? tls.connect({ ...pool.tls, host, port, servername: host }) : net.connect({ host, port });
    this.socket.setNoDelay(true).on('data', (bytes) => this.input(bytes)).on('close', () => this.closed()).on('error', () => {});
    this.step();
  }
  input(bytes) { // straight into the engine: a reply resolves its operation from here
    if (this.handshake) { this.handshake.handleInput(bytes, now()); this.step(); }
    else if (this.run) this.run.handle(this.run.op.feed(now(), this.node, bytes));
    else this.idle.push(bytes); // owed to the last operation: the next one skips it
  }
  step() { // sends what the handshake asks; on its end, the socket is ready or closed
    clearTimeout(this.timer);
    for (let out; (out = this.handshake.pollTransmit()); ) this.socket.write(out);
    const outcome = this.handshake.pollOutcome(), at = this.handshake.pollTimeout();
    if (!outcome) return void (at !== undefined && (this.timer = setTimeout(() => { this.handshake.handleTimeout(now()); this.step(); }, at - now())));
    this.handshake = null;
    if (outcome.tag === 'err') { this.failed = true; return this.destroy(); }
    for (const bytes of this.queued.splice(0)) this.socket.write(bytes);
    if (!this.run) this.pool.give(this, 0);
  }
  write(bytes) { if (this.handshake) this.queued.push(bytes); else this.socket.write(bytes); }
  closed() { // 'error' is always followed by 'close'
    if (!this.alive) return;
    this.alive = false; clearTimeout(this.timer);
    if (this.handshake) { this.handshake.handleDisconnect(now()); this.handshake = null; }
    else if (!this.failed) this.pool.session.disconnected(this.node, now());
    this.pool.forget(this);
    if (this.run) { this.run.conns[this.node] = null; this.run.handle(this.run.op.lose(now(), this.node)); }
  }
  destroy() { this.socket.destroy(); this.closed(); }
}

// One operation over the flat calls (src/flat.js), from its first step to its outcome.
class Run {
  constructor(pool, resolve) { Object.assign(this, { pool, resolve, conns: [], op: null, at: undefined, write: (node, bytes) => this.conns[node]?.write(bytes) }); }
  handle(bytes) { // one engine call per event: what happened in, what to do out
    const { timeout, outcome, owed } = decodeStep(bytes, this.op, this.write);
    if (!outcome) return this.pool.due(this, timeout);
    const op = this.op; // over: its connections pooled (owing `owed[node]` replies) or closed
    this.op = null; this.pool.running.delete(this); this.signal?.removeEventListener('abort', this.abort);
    this.conns.forEach((c, node) => { if (!c) return; c.run = null; if (owed[node] >= 0) this.pool.give(c, owed[node]); else c.destroy(); });
    op[Symbol.dispose]?.(); this.resolve(outcome);
  }
}

// The connections of one session, per node, and the operations running on them.
export class Pool {
  constructor(session, tls) { Object.assign(this, { session, tls, idle: [...Array(session.nodes())].map(() => []), lent: new Uint8Array(session.nodes()), running: new Set() }); }
  warm() { for (let node; (node = this.session.pollConnect(now())) !== undefined; ) this.open(node); }
  open(node) { const hs = this.session.connect(node, now()); return hs && new Conn(this, node, hs); }
  give(conn, owed) { conn.run = null; conn.owed = owed; if (conn.alive && !this.idle[conn.node].includes(conn)) this.idle[conn.node].push(conn); this.onChange?.(); }
  forget(conn) { this.idle[conn.node] = this.idle[conn.node].filter((c) => c !== conn); this.onChange?.(); }
  close() { clearTimeout(this.timer); for (const conns of this.idle) for (const c of conns.splice(0)) c.socket.destroy(); }
  // One timer for all the pool's operations, at the earliest of their deadlines: an operation
  // whose reply comes before its deadline (the common case) arms and clears none.
  due(run, at) {
    if ((run.at = at) === undefined || this.alarm <= at) return;
    clearTimeout(this.timer); this.alarm = at;
    this.timer = setTimeout(() => { this.alarm = undefined; for (const r of this.running) if (r.at <= now()) r.handle(r.op.tick(now())); for (const r of this.running) this.due(r, r.at); }, at - now());
  }
  // Resolves once the session's first connect reached a majority (the engine builds no operation
  // before), or rejects with its error when too few answered; later operations reconnect in `run`.
  ready() {
    return (this.connecting ??= new Promise((resolve, reject) => {
      let timer;
      this.onChange = () => { // on every connection event, and at the session's deadlines
        clearTimeout(timer); this.session.handleTimeout(now());
        const outcome = this.session.connectOutcome();
        if (!outcome) return void (timer = setTimeout(this.onChange, Math.max(1, (this.session.pollTimeout() ?? now() + 1000) - now())));
        this.onChange = null;
        if (outcome.tag === 'err') { this.connecting = null; reject(outcome.val); } else { this.connected = true; resolve(); }
      };
      this.warm(); this.onChange();
    }));
  }
  // Drives one operation to its outcome: `build()` makes it; `started(lent)`, where given, makes
  // it and takes its first step in one call (unless a connection still owes an earlier one replies).
  run(build, signal, started) {
    return new Promise((resolve) => {
      const run = new Run(this, resolve), { conns } = run, lent = this.lent;
      for (let node = 0; node < lent.length; node++) lent[node] = (conns[node] = this.idle[node].pop() ?? this.open(node)) ? 1 : 0;
      try {
        if (started && !conns.some((c) => c?.owed)) [run.op, run.first] = started(lent);
        else {
          run.op = build();
          conns.forEach((conn, node) => { // a connection that cannot skip what it owes (a status): another one
            if (conn?.owed && !run.op.discardReplies(node, conn.owed)) { conn.destroy(); lent[node] = (conns[node] = this.open(node)) ? 1 : 0; }
          });
          run.first = run.op.start(now(), lent);
        }
      } catch (error) { // not built: the connections go back as they were
        conns.forEach((c) => c && this.give(c, c.owed));
        throw error;
      }
      conns.forEach((c) => c && (c.run = run));
      this.running.add(run);
      if ((run.signal = signal)) signal.addEventListener('abort', (run.abort = () => { run.op.cancel(now()); run.handle(run.op.tick(now())); }), { once: true });
      if (signal?.aborted) run.op.cancel(now());
      run.handle(run.first);
      conns.forEach((c, node) => { while (run.op && c?.idle.length) run.handle(run.op.feed(now(), node, c.idle.shift())); });
    });
  }
}
