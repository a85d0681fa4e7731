#!/usr/bin/env node
/**
 * The contract suite's Node.js side (tests/contract/test_contract.py starts it):
 *
 *   node tests/contract/node_worker.js serve --server HOST:PORT [--concurrency N]
 *        [--worker-group G] [--shutdown-grace S]
 *       a Node SDK worker with the same test task types as tests/contract/python_tasks.py;
 *   node tests/contract/node_worker.js probe --server HOST:PORT
 *       reads JSON commands on stdin, one a line ({"op": "register" | "poll" | "complete" |
 *       "fail" | "heartbeat", ...}), calls the Node SDK's WorkerClient and writes one JSON
 *       answer a line: {"code": "OK", ...} or {"code": "<gRPC status name>", "details": ...}.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { createInterface } from 'node:readline';
import {
  RpcError, TaskFailure, TaskResult, Worker, WorkerClient, task,
} from '../../worker_sdk/node/src/index.js';

const SDK = 'node';

/** Same values as TYPED_OUTPUTS in python_tasks.py. */
const TYPED_OUTPUTS = {
  int: 42,
  negative: -7,
  float: 1.5,
  bool: true,
  none: null,
  text: 'plain text',
  list: [1, 'two', 3.25, false, null],
  object: { nested: { deep: [true, { k: 'v' }] } },
  maxSafeInteger: 9007199254740991,
};

task('io.kestrel.contract.Echo', async (ctx, props) => {
  ctx.log.info(`echo: ${props.value}`);
  const outputs = { value: props.value ?? null };
  return props.warning ? new TaskResult({ outputs, warning: true }) : outputs;
});

task('io.kestrel.contract.Typed', async () => ({ ...TYPED_OUTPUTS }));

task('io.kestrel.contract.Fail', async (ctx, props) => {
  if ('succeedOnAttempt' in props && ctx.attempt >= Number(props.succeedOnAttempt)) return { attempt: ctx.attempt };
  throw new TaskFailure(String(props.message ?? 'failed on purpose'), { outputs: { partial: 1 } });
});

task('io.kestrel.contract.Sleep', async (ctx, props) => {
  const seconds = Number(props.seconds ?? 1);
  const slept = ctx.attempt <= Number(props.sleepAttempts ?? 1000);
  if (slept) {
    try {
      await sleep(seconds * 1000, undefined, { signal: ctx.signal });
    } catch (exc) {
      if (!ctx.cancelled) throw exc;
      ctx.log.warn('stopping: cancellation requested');
      throw new Error('cancelled');
    }
  }
  return { attempt: ctx.attempt, slept };
});

task('io.kestrel.contract.Logs', async (ctx, props) => {
  const count = Number(props.count ?? 10);
  for (let i = 1; i <= count; i += 1) ctx.log.info(`line ${String(i).padStart(4, '0')} ✓`);
  return { count };
});

task('io.kestrel.contract.Big', async (ctx, props) => {
  const times = Number(props.times);
  return { text: String(props.unit).repeat(times), times };
});

task('io.kestrel.contract.Files', async (ctx, props) => {
  const content = String(props.unit).repeat(Number(props.times));
  if (props.op === 'write') {
    const file = path.join(ctx.workingDir, 'source.txt');
    await writeFile(file, content, 'utf8');
    const uri = await ctx.storage.upload(file, 'data.txt');
    await ctx.kv.set(props.key, { uri });
    return { uri };
  }
  const local = await ctx.storage.download(props.uri, path.join(ctx.workingDir, 'copy.txt'));
  const data = await readFile(local);
  const entry = await ctx.kv.get(props.key);
  const missing = await ctx.kv.get(`${props.key}-missing`);
  return {
    matches: data.toString('utf8') === content,
    size: data.length,
    kvSame: entry !== null && JSON.stringify(entry.value) === JSON.stringify({ uri: props.uri }),
    missing,
  };
});

task('io.kestrel.contract.node.Whoami', async (ctx, props) => {
  const outputs = { sdk: SDK, previous: props.previous ?? null };
  if ('write' in props) outputs.uri = await ctx.storage.uploadBytes(String(props.write), `from-${SDK}.txt`);
  if ('read' in props) outputs.read = (await ctx.storage.readBytes(props.read)).toString('utf8');
  return outputs;
});

const [mode, ...rest] = process.argv.slice(2);
const { values } = parseArgs({
  args: rest,
  options: {
    server: { type: 'string' },
    concurrency: { type: 'string', default: '4' },
    'worker-group': { type: 'string', default: '' },
    'shutdown-grace': { type: 'string', default: '5' },
  },
});

if (mode === 'serve') {
  const worker = new Worker(values.server, {
    concurrency: Number(values.concurrency),
    workerGroup: values['worker-group'],
    shutdownGraceSeconds: Number(values['shutdown-grace']),
  });
  await worker.run();
  process.exit(0);
} else if (mode === 'probe') {
  const client = new WorkerClient(values.server);
  const answer = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const cmd = JSON.parse(line);
    try {
      let result = {};
      if (cmd.op === 'register') {
        const r = await client.registerWorker({
          task_types: cmd.task_types, hostname: 'contract-probe', sdk: 'node-probe/0', concurrency: 1, worker_group: cmd.worker_group ?? '',
        });
        result = { worker_id: r.worker_id };
      } else if (cmd.op === 'poll') {
        const r = await client.pollTaskRuns({ worker_id: cmd.worker_id, max_task_runs: 1, wait_seconds: cmd.wait ?? 1 });
        result = { assignments: r.assignments.map((a) => ({ task_token: a.task_token, task_id: a.task_id, attempt: a.attempt })) };
      } else if (cmd.op === 'complete') {
        await client.completeTaskRun(cmd.task_token, cmd.outputs_json ?? '');
      } else if (cmd.op === 'fail') {
        await client.failTaskRun(cmd.task_token, cmd.error_message ?? '', 'FAILURE_REASON_TASK_ERROR');
      } else if (cmd.op === 'heartbeat') {
        const r = await client.recordTaskRunHeartbeat(cmd.task_token);
        result = { cancel_requested: r.cancel_requested };
      } else {
        throw new Error(`unknown op ${cmd.op}`);
      }
      answer({ code: 'OK', ...result });
    } catch (exc) {
      if (!(exc instanceof RpcError)) throw exc;
      answer({ code: exc.codeName, details: exc.details });
    }
  }
  client.close();
} else {
  process.stderr.write('usage: node_worker.js serve|probe --server HOST:PORT [options]\n');
  process.exit(2);
}
