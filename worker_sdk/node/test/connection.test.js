import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TaskRegistry, Worker, connectionFromEnv, channelCredentials } from '../src/index.js';
import { startFakeServer, until, memoryLogger } from '../testing/fake-server.js';

test('connectionFromEnv reads KESTREL_TOKEN and KESTREL_TLS_*; flags win', () => {
  const env = { KESTREL_TOKEN: 'from-env', KESTREL_TLS_CA: 'ca.pem' };
  assert.deepEqual(connectionFromEnv(env), { token: 'from-env', tlsCa: 'ca.pem', tlsCert: undefined, tlsKey: undefined, tls: false });
  assert.equal(connectionFromEnv(env, { token: 'flag', tlsCert: undefined }).token, 'flag');
  assert.equal(connectionFromEnv({}).token, undefined);
});

test('channelCredentials names a bad TLS option', () => {
  assert.throws(() => channelCredentials({ tlsCert: 'a.pem' }), /--tls-cert and --tls-key/);
  assert.throws(() => channelCredentials({ tlsCa: '/nonexistent/ca.pem' }), /--tls-ca: cannot read/);
  assert.ok(channelCredentials({}));
});

test('the worker sends its token on every call: registration, polls, logs and results', async () => {
  const seen = [];
  const record = (name, reply) => (req, n, call) => {
    seen.push([name, call.metadata.get('authorization')[0]]);
    return reply(req);
  };
  const server = await startFakeServer({
    register: record('register', (req) => ({ worker_id: req.worker_id, heartbeat_interval_seconds: 0.05, lease_seconds: 2 })),
  });
  const registry = new TaskRegistry();
  registry.register('t.T', async () => ({}));
  const worker = new Worker(server.address, {
    registry, logger: memoryLogger(), pollWaitSeconds: 0.2, shutdownGraceSeconds: 0.1, connection: { token: 'kst_secret-token' },
  });
  const running = worker.run({ handleSignals: false });
  try {
    assert.ok(await worker.waitReady(5));
    await until(() => seen.length >= 1);
    assert.deepEqual(seen[0], ['register', 'Bearer kst_secret-token']);
  } finally {
    worker.stop({ force: true });
    await running.catch(() => {});
    server.kill();
  }
});
