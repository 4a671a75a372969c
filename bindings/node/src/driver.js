// The glue between the engine component and node:net/node:tls: sockets, timers, the clock and entropy. Every
// decision (what to send, retries, quorum, which node to connect) is the engine's: this moves bytes and keeps time.
import net from 'node:net';
import tls from 'node:tls';
import { randomFillSync } from 'node:crypto';
import { decodeStep, feed } from './flat.js';
export const now = () => performance.now();
// Random bytes, 24 a call (a token, retry jitter), cut from 4 KiB of CSPRNG output (one `randomFillSync` costs ~3 us).
let random = new Uint8Array(0), taken = 0; export const entropy = () => { if (taken + 24 > random.length) [random, taken] = [randomFillSync(new Uint8Array(4096)), 0]; return random.subarray(taken, (taken += 24)); };
// One socket to one node: its handshake first, then lent to one operation (`run`) at a time (one `Run.reopen` made: at its handshake's end).
class Conn {
  constructor(pool, node, handshake) {
    Object.assign(this, { pool, node, handshake, run: null, owed: 0, idle: [], queued: [], alive: true, at: undefined });
    const { host, port, tls: secure } = pool.session.endpoint(node); // TLS: the system's CAs, or the `tls` option's
    this.socket = (secure ? tls.connect({ ...pool.tls, host, port, servername: host }) : net.connect({ host, port })).setNoDelay(true);
    this.socket.on('data', (bytes) => this.input(bytes)).on('close', () => this.closed()).on('error', () => {}); this.step();
  }
  input(bytes) { // straight into the engine: a reply resolves its operation from here
    if (this.handshake) { this.handshake.handleInput(bytes, now()); this.step(); }
    else if (this.run) this.run.handle(feed(this.run.op, now(), this.node, bytes));
    else this.idle.push(bytes); // owed to the last operation: the next one skips it
  }
  tick() { this.handshake.handleTimeout(now()); this.step(); }
  step() { // sends what the handshake asks; at its end the socket is ready (or closed)
    for (let out; (out = this.handshake.pollTransmit()); ) this.socket.write(out);
    const outcome = this.handshake.pollOutcome(); if (!outcome) return this.pool.due(this, this.handshake.pollTimeout());
    this.handshake = null; this.pool.running.delete(this); if (outcome.tag === 'err') { this.failed = true; return this.destroy(); }
    for (const bytes of this.queued.splice(0)) this.socket.write(bytes); // written while it shook hands
    if (!this.run) this.pool.give(this, 0); else this.run.handle(this.run.op.lend(now(), this.node)); // `connected`: the engine takes it for a node its operation lost
  }
  write(bytes) { if (this.handshake) this.queued.push(bytes); else this.socket.write(bytes); }
  closed() { // 'error' is always followed by 'close'
    if (!this.alive) return; this.alive = false; this.pool.running.delete(this);
    if (this.handshake) { this.handshake.handleDisconnect(now()); this.handshake = null; } else if (!this.failed) this.pool.session.disconnected(this.node, now());
    if (this.run) { this.run.conns[this.node] = null; this.run.handle(this.run.op.lose(now(), this.node)); }
    this.pool.give(this, 0); // forgotten: it is closed
  }
  destroy() { this.socket.destroy(); this.closed(); }
}
// One operation over the flat calls (src/flat.js) to its outcome, which `finish` makes what its Promise settles with.
class Run { // one a call, so its fields are set one by one (`Object.assign` cost more than the rest of it)
  constructor(pool, resolve, reject, finish) { this.pool = pool; this.resolve = resolve; this.reject = reject; this.finish = finish; this.conns = []; this.op = this.first = null; this.at = undefined; this.write = (node, bytes) => this.conns[node]?.write(bytes); }
  tick() { this.handle(this.op.tick(now())); }
  reopen() { for (let n = 0; n < this.conns.length; n++) if (!this.conns[n] && (this.conns[n] = this.pool.open(n))) this.conns[n].run = this; } // a node without a connection: a new one, when the session allows
  settle(outcome) { try { this.resolve(this.finish(outcome)); } catch (error) { this.reject(error); } } // an operation not built: its error
  handle(bytes) { // one engine call per event: what happened in, what to do out
    const { timeout, outcome, owed } = decodeStep(bytes, this.op, this.write); if (!outcome) { this.reopen(); return this.pool.due(this, timeout); }
    const op = this.op; this.op = null; this.pool.running.delete(this); this.signal?.removeEventListener('abort', this.abort);
    for (let node = 0; node < this.conns.length; node++) { const c = this.conns[node]; if (c) { c.run = null; if (owed[node] >= 0) this.pool.give(c, owed[node]); else c.destroy(); } }
    op[Symbol.dispose]?.(); this.settle(outcome);
  }
}
// The connections of one session, per node, and what runs on them (handshakes, operations).
export class Pool {
  constructor(session, tls) { Object.assign(this, { session, tls, idle: [...Array(session.nodes())].map(() => []), lent: new Uint8Array(session.nodes()), running: new Set() }); }
  open(node) { const hs = !this.closed && this.session.connect(node, now()); return hs && new Conn(this, node, hs); } // none once closed
  give(conn, owed) { // back to the pool, owing `owed` replies (a closed one is forgotten)
    const idle = this.idle[conn.node], at = idle.indexOf(conn); conn.run = null; conn.owed = owed;
    if (at >= 0) idle.splice(at, 1); if (conn.alive) idle.push(conn); this.tick?.();
  }
  close() { // operations in flight given up (an acquire rolls back), then every connection: idle, lent, or in its handshake
    this.closed = true; for (const r of [...this.running]) if (r.op) { r.op.cancel(now()); r.tick(); } clearTimeout(this.timer); this.alarm = undefined; for (const c of [...this.idle.flat(), ...[...this.running].flatMap((r) => r.conns ?? [r])]) c?.socket?.destroy();
  }
  // One timer for the pool, at the earliest deadline (`at`, then `tick()`): most replies come first and arm none.
  due(item, at) {
    this.running.add(item); if ((item.at = at) === undefined || this.alarm <= at) return;
    clearTimeout(this.timer); this.alarm = at;
    this.timer = setTimeout(() => { this.alarm = undefined; for (const r of this.running) if (r.at <= now()) r.tick(); for (const r of this.running) this.due(r, r.at); }, at - now());
  }
  // Once: resolves when the first connect reached a majority (the engine builds no operation before), or rejects.
  ready() {
    return (this.connecting ??= new Promise((resolve, reject) => {
      this.tick = () => { // at the connect's deadlines and every connection event (`give`)
        this.session.handleTimeout(now());
        const outcome = this.session.connectOutcome(); if (!outcome) return this.due(this, this.session.pollTimeout() ?? now() + 1000);
        this.tick = null; this.running.delete(this); if (outcome.tag === 'err') { this.connecting = null; reject(outcome.val); } else { this.connected = true; resolve(); }
      };
      for (let node; (node = this.session.pollConnect(now())) !== undefined; ) this.open(node); this.tick();
    }));
  }
  // One operation to `finish(outcome)` (or what it throws): `build()` makes it, or `started(lent)` makes it and steps it at once.
  run(build, signal, started, finish = (outcome) => outcome) {
    return new Promise((resolve, reject) => {
      const run = new Run(this, resolve, reject, finish), { conns } = run, lent = this.lent;
      for (let node = 0; node < lent.length; node++) lent[node] = (conns[node] = this.idle[node].pop() ?? this.open(node)) ? 1 : 0;
      try {
        if (started && !conns.some((c) => c?.owed)) [run.op, run.first] = started(lent);
        else { // a connection that cannot skip what it owes (a status cannot) gives way to a new one
          run.op = build();
          conns.forEach((c, node) => { if (c?.owed && !run.op.discardReplies(node, c.owed)) { c.destroy(); lent[node] = (conns[node] = this.open(node)) ? 1 : 0; } });
          run.first = run.op.start(now(), lent);
        }
      } catch (error) { conns.forEach((c) => c && this.give(c, c.owed)); return run.settle({ tag: 'err', val: error }); } // connections back as they were
      for (const c of conns) if (c) c.run = run;
      if ((run.signal = signal)) signal.addEventListener('abort', (run.abort = () => { run.op.cancel(now()); run.tick(); }), { once: true });
      if (signal?.aborted) run.op.cancel(now()); run.handle(run.first);
      for (let node = 0; node < conns.length; node++) { const c = conns[node]; while (run.op && c?.idle.length) run.handle(feed(run.op, now(), node, c.idle.shift())); }
    });
  }
}
