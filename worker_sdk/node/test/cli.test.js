import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeServer, until } from '../testing/fake-server.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'kestrel-worker.js');

function spawnWorker(args) {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  child.output = '';
  child.stdout.on('data', (d) => { child.output += d; });
  child.stderr.on('data', (d) => { child.output += d; });
  child.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return child;
}

test('kestrel-worker refuses bad arguments with exit code 2 and the usage', async () => {
  for (const args of [['--concurrency', '0'], ['--label', 'novalue'], ['--shutdown-grace', '-1'], ['--bogus']]) {
    const child = spawnWorker(args);
    assert.equal(await child.exited, 2, args.join(' '));
    assert.match(child.output, /usage: kestrel-worker/);
  }
});

test('kestrel-worker --module runs the module\'s task types; SIGTERM hands back running work and exits 0', async () => {
  const server = await startFakeServer();
  const child = spawnWorker(['--server', server.address, '--module', './testing/sample-tasks.js', '--concurrency', '3',
    '--worker-group', 'edge', '--label', 'zone=eu', '--shutdown-grace', '0.2']);
  try {
    await until(() => server.of('register').length === 1, 10000, 'registration');
    const register = server.of('register')[0];
    assert.deepEqual(register.task_types, ['test.cli.Hello', 'test.cli.Slow']);
    assert.equal(register.worker_group, 'edge');
    assert.deepEqual(register.labels, [{ key: 'zone', value: 'eu' }]);
    assert.equal(register.concurrency, 3);
    server.assign({ task_type: 'test.cli.Hello', properties_json: '{"name":"Ada"}' });
    await until(() => server.of('complete').length === 1, 10000, 'completion');
    assert.deepEqual(JSON.parse(server.of('complete')[0].outputs_json), { greeting: 'hello Ada', attempt: 1 });
    server.assign({ task_type: 'test.cli.Slow' });
    await until(() => server.of('heartbeat').length > 0, 10000, 'slow task running');
    child.kill('SIGTERM');
    assert.equal(await child.exited, 0, child.output);
    const fail = server.of('fail')[0];
    assert.equal(fail.reason, 'FAILURE_REASON_WORKER_SHUTDOWN');
    assert.equal(server.names().at(-1), 'shutdown');
    assert.match(child.output, /SIGTERM: draining/);
  } finally {
    child.kill('SIGKILL');
    server.kill();
  }
});
