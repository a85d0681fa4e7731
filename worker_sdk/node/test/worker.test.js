import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Backoff, FailureReason, SDK, TaskFailure, TaskRegistry, TaskResult, Worker, WorkerError, assignmentFromProto, dumpOutputs,
} from '../src/index.js';
import { startFakeServer, status, until, memoryLogger } from '../testing/fake-server.js';

/** A worker on a fresh registry with `tasks` ({type: fn}), quiet logs, short grace. */
function makeWorker(address, tasks, options = {}) {
  const registry = new TaskRegistry();
  for (const [type, fn] of Object.entries(tasks)) registry.register(type, fn);
  const logger = memoryLogger();
  const worker = new Worker(address, { registry, logger, pollWaitSeconds: 0.2, shutdownGraceSeconds: 0.2, concurrency: 2, ...options });
  return { worker, logger };
}

async function withWorker(script, tasks, body, options) {
  const server = await startFakeServer(script);
  const { worker, logger } = makeWorker(server.address, tasks, options);
  const running = worker.run({ handleSignals: false });
  try {
    assert.ok(await worker.waitReady(5), 'worker registered');
    await body({ server, worker, logger, running });
  } finally {
    worker.stop({ force: true });
    await running.catch(() => {});
    server.kill();
  }
}

test('registers its task types, runs an assignment, sends logs before CompleteTaskRun', async () => {
  await withWorker({}, {
    'test.Task': async (ctx, props) => {
      ctx.log.info(`hello ${props.name}`);
      ctx.log.warn('second');
      return { greeting: `hello ${props.name}`, n: 1, when: new Date(0) };
    },
  }, async ({ server, worker }) => {
    const register = server.of('register')[0];
    assert.deepEqual(register.task_types, ['test.Task']);
    assert.equal(register.sdk, SDK);
    assert.equal(register.concurrency, 2);
    assert.equal(worker.workerId, register.worker_id);
    server.assign({ properties_json: '{"name":"Ada"}' });
    await until(() => server.of('complete').length === 1, 5000, 'CompleteTaskRun');
    const complete = server.of('complete')[0];
    assert.equal(complete.task_token, 'token-1');
    assert.equal(complete.state, 'STATE_SUCCESS');
    assert.deepEqual(JSON.parse(complete.outputs_json), { greeting: 'hello Ada', n: 1, when: '1970-01-01T00:00:00.000Z' });
    const logs = server.of('appendLogs').flatMap((r) => r.entries.map((e) => [e.level, e.message]));
    assert.deepEqual(logs, [['LOG_LEVEL_INFO', 'hello Ada'], ['LOG_LEVEL_WARN', 'second']]);
    const names = server.names();
    assert.ok(names.lastIndexOf('appendLogs') < names.indexOf('complete'), 'logs precede the result');
  });
});

test('TaskResult with warning completes WARNING; nothing returned completes without outputs', async () => {
  await withWorker({}, {
    'test.Warn': async () => new TaskResult({ outputs: { x: 1 }, warning: true }),
    'test.Nothing': () => undefined,
  }, async ({ server }) => {
    server.assign({ task_type: 'test.Warn' });
    server.assign({ task_type: 'test.Nothing' });
    await until(() => server.of('complete').length === 2, 5000, 'two completions');
    const byToken = Object.fromEntries(server.of('complete').map((r) => [r.task_token, r]));
    assert.equal(byToken['token-1'].state, 'STATE_WARNING');
    assert.equal(byToken['token-1'].outputs_json, '{"x":1}');
    assert.equal(byToken['token-2'].outputs_json, '');
  });
});

test('failures: TaskFailure message as is with outputs, other errors prefixed, unknown type, bad properties, bad return value', async () => {
  await withWorker({}, {
    'test.Own': async () => { throw new TaskFailure('disk full', { outputs: { partial: 2 } }); },
    'test.Crash': () => { throw new RangeError('out of range'); },
    'test.Array': async () => [1, 2],
    'test.NaN': async () => ({ x: NaN }),
  }, async ({ server }) => {
    server.assign({ task_type: 'test.Own' });
    server.assign({ task_type: 'test.Crash' });
    server.assign({ task_type: 'test.Missing' });
    server.assign({ task_type: 'test.Own', properties_json: '[1]' });
    server.assign({ task_type: 'test.Array' });
    server.assign({ task_type: 'test.NaN' });
    await until(() => server.of('fail').length === 6, 5000, 'six failures');
    const byToken = Object.fromEntries(server.of('fail').map((r) => [r.task_token, r]));
    assert.equal(byToken['token-1'].error_message, 'disk full');
    assert.equal(byToken['token-1'].outputs_json, '{"partial":2}');
    assert.equal(byToken['token-1'].reason, FailureReason.TASK_ERROR);
    assert.equal(byToken['token-2'].error_message, 'RangeError: out of range');
    assert.match(byToken['token-3'].error_message, /Task type "test.Missing" is not registered on worker/);
    assert.match(byToken['token-4'].error_message, /Properties must be a JSON object, got array/);
    assert.match(byToken['token-5'].error_message, /returned an array; expected an object/);
    assert.match(byToken['token-6'].error_message, /outputs are not JSON-serialisable: x is NaN/);
    const errorLines = server.of('appendLogs').flatMap((r) => r.entries).filter((e) => e.level === 'LOG_LEVEL_ERROR');
    assert.ok(errorLines.some((e) => e.message.startsWith('RangeError: out of range\nRangeError: out of range\n    at ')), 'stack logged');
  });
});

test('heartbeats extend the lease; cancel_requested aborts the task and reports CANCELLED', async () => {
  let seen = null;
  await withWorker({
    heartbeat: (req, n) => ({ cancel_requested: n >= 3 }),
  }, {
    'test.Task': async (ctx) => {
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      seen = ctx.signal.reason;
      ctx.log.warn('stopping');
      throw new Error('aborted');
    },
  }, async ({ server }) => {
    server.assign();
    await until(() => server.of('fail').length === 1, 5000, 'FailTaskRun');
    assert.equal(seen, 'cancelled');
    const fail = server.of('fail')[0];
    assert.equal(fail.reason, FailureReason.CANCELLED);
    assert.equal(fail.error_message, 'Task run cancelled: the execution was killed');
    assert.ok(server.of('heartbeat').length >= 3);
    assert.equal(server.of('complete').length, 0);
    const messages = server.of('appendLogs').flatMap((r) => r.entries.map((e) => e.message));
    assert.deepEqual(messages, ['stopping', 'Task run cancelled: the execution was killed']);
  });
});

test('a stale token (NOT_FOUND heartbeat) aborts the task and drops its result', async () => {
  let reason = null;
  await withWorker({
    heartbeat: () => { throw status('NOT_FOUND', 'lease is no longer held'); },
  }, {
    'test.Task': async (ctx) => {
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      reason = ctx.signal.reason;
      return { late: true };
    },
  }, async ({ server, logger }) => {
    server.assign();
    await until(() => reason !== null, 5000, 'abort');
    assert.equal(reason, 'lease lost');
    await until(() => logger.lines.some((l) => /lease of .* lost; stopping it and dropping its result/.test(l)), 5000, 'warning');
    await sleep(200);
    assert.equal(server.of('complete').length + server.of('fail').length, 0);
  });
});

test('NOT_FOUND on the report drops the result without retrying', async () => {
  await withWorker({
    complete: () => { throw status('NOT_FOUND'); },
  }, { 'test.Task': async () => ({ a: 1 }) }, async ({ server, logger }) => {
    server.assign();
    await until(() => logger.lines.some((l) => /lost before its result was reported; result dropped/.test(l)), 5000, 'drop');
    assert.equal(server.of('complete').length, 1);
  });
});

test('a report failing with UNAVAILABLE is retried with the same token until it succeeds', async () => {
  await withWorker({
    complete: (req, n) => { if (n < 3) throw status('UNAVAILABLE'); return {}; },
  }, { 'test.Task': async () => ({ a: 1 }) }, async ({ server }) => {
    server.assign();
    await until(() => server.of('complete').length === 3, 10000, 'three tries');
    assert.deepEqual(new Set(server.of('complete').map((r) => r.task_token)), new Set(['token-1']));
  });
});

test('report retries stop reportGraceSeconds after the last known expiry', async () => {
  let expiry = 0;
  await withWorker({
    heartbeat: () => {
      expiry = Date.now() + 300;
      return { lease_expires_at: { seconds: Math.floor(expiry / 1000), nanos: (expiry % 1000) * 1e6 } };
    },
    fail: () => { throw status('UNAVAILABLE'); },
  }, {
    'test.Task': async () => { await sleep(200); throw new TaskFailure('nope'); },
  }, async ({ server, logger }) => {
    server.assign();
    await until(() => logger.lines.some((l) => /could not report .*UNAVAILABLE/.test(l)), 10000, 'give up');
    const tries = server.calls.filter((c) => c.name === 'fail');
    assert.ok(tries.length >= 2, `retried (${tries.length} tries)`);
    assert.ok(expiry > 0, 'heartbeats moved the lease');
    assert.ok(tries.at(-1).at <= expiry + 700, 'no try after lease end + grace');
    assert.ok(tries.every((t) => t.request.task_token === 'token-1'));
  }, { reportGraceSeconds: 0.5 });
});

test('cancel_task_run_ids in a worker heartbeat stop that task run (CANCELLED), not the others', async () => {
  const aborted = [];
  await withWorker({
    workerHeartbeat: () => ({ cancel_task_run_ids: ['tr-1'] }),
    register: (req) => ({ worker_id: req.worker_id, heartbeat_interval_seconds: 0.05, lease_seconds: 5 }),
  }, {
    'test.Task': async (ctx) => {
      await sleep(ctx.taskRunId === 'tr-1' ? 10_000 : 300, undefined, { signal: ctx.signal }).catch(() => aborted.push(ctx.taskRunId));
      if (ctx.cancelled) throw new Error('stopped');
      return { done: ctx.taskRunId };
    },
  }, async ({ server }) => {
    server.assign();
    server.assign();
    await until(() => server.of('fail').length === 1 && server.of('complete').length === 1, 5000, 'both reported');
    assert.deepEqual(aborted, ['tr-1']);
    assert.equal(server.of('fail')[0].task_token, 'token-1');
    assert.equal(server.of('fail')[0].reason, FailureReason.CANCELLED);
    assert.equal(server.of('complete')[0].task_token, 'token-2');
  });
});

test('a timeout aborts the task and reports TIMEOUT', async () => {
  let reason = null;
  await withWorker({}, {
    'test.Task': async (ctx) => {
      await sleep(10_000, undefined, { signal: ctx.signal }).catch(() => { reason = ctx.signal.reason; });
      throw new Error('stopped');
    },
  }, async ({ server }) => {
    server.assign({ timeout_seconds: 0.2 });
    await until(() => server.of('fail').length === 1, 5000, 'FailTaskRun');
    assert.equal(server.of('fail')[0].reason, FailureReason.TIMEOUT);
    assert.equal(server.of('fail')[0].error_message, 'Timeout after 0.2 seconds');
    assert.equal(reason, 'timeout');
  });
});

test('stop() drains: running work gets the grace period, then is handed back (WORKER_SHUTDOWN) before ShutdownWorker', async () => {
  const server = await startFakeServer();
  const { worker } = makeWorker(server.address, {
    'test.Quick': async () => { await sleep(50); return { quick: true }; },
    'test.Slow': async (ctx) => { await sleep(10_000, undefined, { signal: ctx.signal }).catch(() => {}); throw new Error('aborted'); },
  }, { shutdownGraceSeconds: 0.5 });
  const running = worker.run({ handleSignals: false });
  try {
    await worker.waitReady(5);
    server.assign({ task_type: 'test.Quick' });
    server.assign({ task_type: 'test.Slow' });
    await until(() => server.of('heartbeat').length > 0, 5000, 'both running');
    worker.stop();
    await running;
    assert.equal(server.of('complete').length, 1, 'the quick one finished within the grace period');
    const fail = server.of('fail')[0];
    assert.equal(fail.task_token, 'token-2');
    assert.equal(fail.reason, FailureReason.WORKER_SHUTDOWN);
    const names = server.names();
    assert.equal(names.at(-1), 'shutdown');
    assert.ok(names.indexOf('fail') < names.indexOf('shutdown'));
  } finally {
    server.kill();
  }
});

test('polls ask for free slots only (concurrency)', async () => {
  let release;
  const gate = new Promise((r) => { release = r; });
  await withWorker({}, { 'test.Task': async () => { await gate; return {}; } }, async ({ server }) => {
    server.assign();
    await until(() => server.of('heartbeat').length > 0, 5000, 'running');
    const before = server.of('poll').length;
    await until(() => server.of('poll').length > before, 5000, 'another poll');
    assert.equal(server.of('poll').at(-1).max_task_runs, 1);
    release();
    await until(() => server.of('complete').length === 1, 5000, 'complete');
  }, { concurrency: 2 });
});

test('FAILED_PRECONDITION from a poll makes the worker register again', async () => {
  await withWorker({
    poll: (req, n) => { if (n === 2) throw status('FAILED_PRECONDITION', 'unknown worker'); return { assignments: [] }; },
  }, { 'test.Task': async () => ({}) }, async ({ server }) => {
    await until(() => server.of('register').length >= 2, 5000, 'second registration');
    const [first, second] = server.of('register');
    assert.equal(first.worker_id, second.worker_id, 'same id across registrations');
  });
});

test('a refused registration is a WorkerError', async () => {
  const server = await startFakeServer({ register: () => { throw status('INVALID_ARGUMENT', 'task_types: bad'); } });
  const { worker } = makeWorker(server.address, { 'test.Task': async () => ({}) });
  await assert.rejects(worker.run({ handleSignals: false }), (err) => err instanceof WorkerError && /INVALID_ARGUMENT: task_types: bad/.test(err.message));
  server.kill();
});

test('reconnects with backoff: registers once the control plane comes up', async () => {
  const port = await new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => { const p = probe.address().port; probe.close(() => resolve(p)); });
  });
  const { worker, logger } = makeWorker(`127.0.0.1:${port}`, { 'test.Task': async () => ({}) });
  const running = worker.run({ handleSignals: false });
  await until(() => logger.lines.some((l) => /not reachable \(UNAVAILABLE\); retrying/.test(l)), 10000, 'first failure');
  const server = await startFakeServer({}, { port });
  try {
    assert.ok(await worker.waitReady(15), 'registered after the server came up');
    assert.equal(server.of('register').length, 1);
  } finally {
    worker.stop({ force: true });
    await running;
    server.kill();
  }
});

test('Backoff stays within [d/2, d] and is capped', () => {
  const backoff = new Backoff(1, 4);
  const delays = Array.from({ length: 6 }, () => backoff.next());
  [1, 2, 4, 4, 4, 4].forEach((d, i) => assert.ok(delays[i] >= d / 2 && delays[i] <= d, `delay ${i}: ${delays[i]}`));
  backoff.reset();
  assert.ok(backoff.next() <= 1);
});

test('assignmentFromProto turns empty fields into null and timestamps into Dates', () => {
  const a = assignmentFromProto({
    task_token: 't', task_run_id: 'r', execution_id: 'e', namespace: 'n', flow_id: 'f', flow_revision: 2, task_id: 'x',
    task_type: 'y', attempt: 0, properties_json: '{}', idempotency_key: 'e:r', value: '', timeout_seconds: 0,
    lease_expires_at: { seconds: '10', nanos: 500_000_000 }, ready_at: null,
  });
  assert.equal(a.attempt, 1);
  assert.equal(a.value, null);
  assert.equal(a.timeoutSeconds, null);
  assert.equal(a.leaseExpiresAt.getTime(), 10_500);
  assert.equal(a.readyAt, null);
});

test('dumpOutputs: Sets, Maps and safe BigInts convert; NaN and Infinity are refused', () => {
  assert.equal(dumpOutputs(null), '');
  assert.equal(dumpOutputs({ s: new Set([1]), m: new Map([['k', 2]]), b: 3n }), '{"s":[1],"m":{"k":2},"b":3}');
  assert.throws(() => dumpOutputs({ x: Infinity }), /x is Infinity/);
  assert.throws(() => dumpOutputs({ b: 2n ** 60n }), /BigInt beyond 2\^53/);
});

test('the constructor refuses a bad concurrency', () => {
  assert.throws(() => new Worker('x:1', { concurrency: 0 }), RangeError);
});

test('eager dispatch: a completion asks for one task run and runs what comes back', async () => {
  let release;
  const gate = new Promise((resolve) => { release = resolve; });
  await withWorker({}, {
    'test.Gated': async () => { await gate; return { first: true }; },
    'test.Task': async () => ({ second: true }),
  }, async ({ server }) => {
    server.assign({ task_type: 'test.Gated' });
    await until(() => server.of('heartbeat').length > 0, 5000, 'the first task run to start');
    const second = server.assign({ task_type: 'test.Task' }); // queued while every slot is busy
    release();
    await until(() => server.of('complete').length === 2, 5000, 'both completions');
    const [first, next] = server.of('complete');
    assert.equal(first.max_next_task_runs, 1);
    assert.deepEqual(server.eager(), [second], 'the second task run came with the first completion');
    assert.equal(next.task_token, second);
    assert.deepEqual(JSON.parse(next.outputs_json), { second: true });
  }, { concurrency: 1 });
});
