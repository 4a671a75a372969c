// Real redis-server processes for the tests, on free loopback ports, and a tiny RESP client to
// look at them. Startup waits on an observed PONG, never on a sleep alone.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
export const command = (port, ...args) => commandOver(port, undefined, ...args);

/** `command` over TLS when `tls` (from `makeCertificates`) is given. */
export function commandOver(port, tls, ...args) {
  return new Promise((resolve, reject) => {
    const socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(tls.ca), servername: 'localhost' })
      : net.connect({ host: '127.0.0.1', port });
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

/** A CA and a `localhost`/127.0.0.1 server certificate signed by it, made with openssl in a
 * fresh directory (as host/tests/tls.rs does): `{ ca, cert, key }` file paths. */
export function makeCertificates() {
  const dir = mkdtempSync(join(tmpdir(), 'distlock-tls-'));
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2',
    '-subj', '/CN=distlock test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext');
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
}

export class RedisServer {
  /**
   * A server on a free loopback port; with `tls` (from `makeCertificates`), TLS only; `binary`:
   * another server taking redis-server's command line (valkey-server).
   */
  static async start(tls, binary = 'redis-server') {
    const port = await freePort();
    const listen = tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no']
      : ['--port', String(port)];
    const child = spawn(binary, [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const server = new RedisServer(port, child, tls);
    const deadline = Date.now() + 5000;
    for (;;) {
      try { if ((await commandOver(port, tls, 'PING')) === 'PONG') return server; } catch { /* not up yet */ }
      if (Date.now() > deadline || child.exitCode !== null) { child.kill('SIGKILL'); throw new Error(`${binary} on ${port} did not start`); }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  constructor(port, child, tls) { Object.assign(this, { port, child, url: `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}` }); }
  pause() { this.child.kill('SIGSTOP'); }
  resume() { this.child.kill('SIGCONT'); }
  stop() { this.child.kill('SIGKILL'); }
  async blockedClients() { return Number(/blocked_clients:(\d+)/.exec(await command(this.port, 'INFO', 'clients'))[1]); }
  /** The ids of the clients blocked on a list (`b` in their `CLIENT LIST` flags): a waiter that blocks again on a new connection shows up under a new id. */
  async blockedClientIds() {
    const list = await command(this.port, 'CLIENT', 'LIST');
    return list.split('\n').filter((line) => / flags=\S*b/.test(line)).map((line) => Number(/\bid=(\d+)/.exec(line)[1]));
  }
}
