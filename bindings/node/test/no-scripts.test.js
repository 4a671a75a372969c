// `noScripts` against a real valkey-server 9 (native DELIFEQ and SET IFEQ), as a user whose ACL
// forbids every script: scripts/test.sh sets DISTLOCK_VALKEY_SERVER to the Valkey it installs.
// Missing, the test fails, unless DISTLOCK_SKIP_REDIS=1 asks to skip.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, NotAcquired, InvalidArgument } from '../src/index.js';
import { RedisServer, command } from './redis.js';

const binary = process.env.DISTLOCK_VALKEY_SERVER;
const skip = !binary && process.env.DISTLOCK_SKIP_REDIS === '1' && 'no valkey-server (DISTLOCK_SKIP_REDIS=1)';
const cleanup = [];
after(() => cleanup.forEach((f) => f()));

test('noScripts takes, refuses and releases a lock with native commands only', { skip }, async () => {
  assert.ok(binary, 'valkey-server (9.0 or later) was not found: run scripts/test.sh, or set DISTLOCK_VALKEY_SERVER');
  const server = await RedisServer.start(undefined, binary);
  cleanup.push(() => server.stop());
  await command(server.port, 'ACL', 'SETUSER', 'app', 'on', '>pw', '~*', '+@all', '-@scripting');
  const url = `redis://app:pw@127.0.0.1:${server.port}`;
  await assert.rejects(Client.connect(url, { noScripts: true, fenced: true }),
    (e) => e instanceof InvalidArgument && e.detail.kind === 'needs-scripts');
  const [a, b] = [await Client.connect(url, { noScripts: true }), await Client.connect(url, { noScripts: true })];
  cleanup.push(() => { a.close(); b.close(); });
  const name = `no-scripts-${process.pid}`;
  const lease = await a.acquire(name, { autoRenew: false });
  assert.equal(await command(server.port, 'GET', `distlock:{${name}}`), lease.token);
  await assert.rejects(b.tryAcquire(name), NotAcquired);
  await lease.release();
  assert.equal(await command(server.port, 'GET', `distlock:{${name}}`), null);
  const stats = await command(server.port, 'INFO', 'commandstats');
  assert.match(stats, /cmdstat_delifeq:calls=1,/);
  assert.doesNotMatch(stats, /cmdstat_eval(sha)?:/);
});
