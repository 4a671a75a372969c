// Real redis-server processes for the tests, on free loopback ports, and a tiny RESP client to
// look at them. Startup waits on an observed PONG, never on a sleep alone.
import { spawn } from 'node:child_process';
import net from 'node:net';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** One RESP command; resolves with the reply (string, number, null) or rejects on `-ERR`. */
export function command(port, ...args) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      const end = data.indexOf('\r\n');
      if (end < 0) return;
      const [kind, head] = [data[0], data.slice(1, end)];
      if (kind === '$') {
        const len = Number(head);
        if (len < 0) { socket.end(); return resolve(null); }
        if (data.length < end + 2 + len + 2) return;
        socket.end();
        return resolve(data.slice(end + 2, end + 2 + len));
      }
      socket.end();
      if (kind === '-') reject(new Error(head));
      else resolve(kind === ':' ? Number(head) : head);
    });
    socket.write(args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).reduce((o, a) => o + a, `*${args.length}\r\n`));
  });
}

export class RedisServer {
  static async start() {
    const port = await freePort();
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const server = new RedisServer(port, child);
    const deadline = Date.now() + 5000;
    for (;;) {
      try { if ((await command(port, 'PING')) === 'PONG') return server; } catch { /* not up yet */ }
      if (Date.now() > deadline || child.exitCode !== null) { child.kill('SIGKILL'); throw new Error(`redis-server on ${port} did not start`); }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  constructor(port, child) { Object.assign(this, { port, child, url: `redis://127.0.0.1:${port}` }); }
  pause() { this.child.kill('SIGSTOP'); }
  resume() { this.child.kill('SIGCONT'); }
  stop() { this.child.kill('SIGKILL'); }
  async blockedClients() { return Number(/blocked_clients:(\d+)/.exec(await command(this.port, 'INFO', 'clients'))[1]); }
}
