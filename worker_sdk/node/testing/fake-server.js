/**
 * An in-process fake control plane for the SDK's unit tests: a real @grpc/grpc-js server
 * implementing WorkerService and LogService from the contract, answering from a script and
 * recording every call. (End-to-end behaviour against the real control plane is covered by
 * tests/contract in the repository.)
 */
import * as grpc from '@grpc/grpc-js';
import { loadContract } from '../src/proto.js';

/** Builds a gRPC error. */
export function status(code, details = 'scripted') {
  return Object.assign(new Error(details), { code: grpc.status[code], details });
}

/**
 * Starts a fake server.
 * @param {object} [script] handler overrides: `register(req, n)`, `poll(req, n)`, `sha256` (what
 *   downloads claim the stored files' sha256 is; default: the uploaded one),
 *   `heartbeat(req, n)`, `complete(req, n)`, `fail(req, n)`, `appendLogs(req, n)`,
 *   `shutdown(req, n)`, each returning a response object or throwing a status() error.
 * @param {{port?: number}} [options]
 */
export async function startFakeServer(script = {}, { port = 0 } = {}) {
  const v1 = loadContract().kestrel.v1;
  const calls = [];
  const queue = [];
  const eager = []; // tokens handed out by CompleteTaskRun
  const counts = {};
  let tokens = 0;
  const handler = (name, fallback) => async (call, callback) => {
    counts[name] = (counts[name] ?? 0) + 1;
    calls.push({ name, request: call.request, at: Date.now() });
    try {
      const fn = script[name] ?? fallback;
      callback(null, await fn(call.request, counts[name], call));
    } catch (exc) {
      callback(exc);
    }
  };
  const server = new grpc.Server();
  server.addService(v1.WorkerService.service, {
    RegisterWorker: handler('register', (req) => ({ worker_id: req.worker_id || 'w-1', heartbeat_interval_seconds: 0.05, lease_seconds: 2 })),
    PollTaskRuns: handler('poll', async (req) => {
      const deadline = Date.now() + Math.min(req.wait_seconds, 0.2) * 1000;
      while (queue.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      return { assignments: queue.splice(0, req.max_task_runs) };
    }),
    RecordTaskRunHeartbeat: handler('heartbeat', () => ({ cancel_requested: false })),
    // Eager dispatch, as the control plane: up to max_next_task_runs queued assignments.
    CompleteTaskRun: handler('complete', (req) => {
      const handed = queue.splice(0, req.max_next_task_runs ?? 0);
      eager.push(...handed.map((a) => a.task_token));
      return { assignments: handed };
    }),
    FailTaskRun: handler('fail', () => ({})),
    WorkerHeartbeat: handler('workerHeartbeat', () => ({})),
    ShutdownWorker: handler('shutdown', () => ({ requeued_task_runs: 0 })),
  });
  server.addService(v1.LogService.service, {
    AppendLogs: handler('appendLogs', () => ({})),
    ListLogs: handler('listLogs', () => ({ entries: [] })),
    TailLogs: (call) => call.end(),
  });
  const files = new Map(); // uri -> {data: Buffer, sha256: string}
  server.addService(v1.StorageService.service, {
    UploadFile: (call, callback) => {
      let header = null;
      const chunks = [];
      call.on('data', (message) => {
        if (message.part === 'header') header = message.header;
        else chunks.push(message.chunk);
      });
      call.on('end', () => {
        calls.push({ name: 'upload', request: { header, chunkSizes: chunks.map((c) => c.length) }, at: Date.now() });
        const data = Buffer.concat(chunks);
        const uri = `kestra:///ns/f/executions/ex-1/tasks/t/tr/${header.file_name}`;
        files.set(uri, { data, sha256: script.sha256 ?? header.expected_sha256 });
        callback(null, { file: { uri, size: String(data.length), sha256: header.expected_sha256 } });
      });
    },
    DownloadFile: (call) => {
      calls.push({ name: 'download', request: call.request, at: Date.now() });
      const file = files.get(call.request.uri);
      if (!file) {
        call.emit('error', status('NOT_FOUND', `no file ${call.request.uri}`));
        return;
      }
      call.write({ info: { uri: call.request.uri, size: String(file.data.length), sha256: file.sha256 } });
      for (let start = 0; start < file.data.length; start += 1024 * 1024) call.write({ chunk: file.data.subarray(start, start + 1024 * 1024) });
      call.end();
    },
    GetFileInfo: handler('fileInfo', () => { throw status('UNIMPLEMENTED'); }),
    ListFiles: handler('listFiles', () => ({ files: [] })),
    DeleteFile: handler('deleteFile', () => ({ deleted: false })),
  });
  const kv = new Map();
  server.addService(v1.KVService.service, {
    SetKV: handler('setKV', (req) => {
      kv.set(req.key, req);
      return { entry: { namespace: 'ns', key: req.key, type: req.type, value_json: req.value_json } };
    }),
    GetKV: handler('getKV', (req) => {
      const entry = kv.get(req.key);
      if (!entry) throw status('NOT_FOUND', `no key ${req.key}`);
      return { entry: { namespace: 'ns', key: req.key, type: 'KV_TYPE_JSON', value_json: entry.value_json } };
    }),
    ListKV: handler('listKV', () => ({ entries: [] })),
    DeleteKV: handler('deleteKV', (req) => ({ deleted: kv.delete(req.key) })),
  });
  const bound = await new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    calls,
    /** Names of the recorded calls, in order. */
    names: () => calls.map((c) => c.name),
    /** Requests of one method. */
    of: (name) => calls.filter((c) => c.name === name).map((c) => c.request),
    /** Tokens handed out with a CompleteTaskRun response (eager dispatch), in order. */
    eager: () => [...eager],
    /** Queues one assignment; returns its token. */
    assign(fields = {}) {
      tokens += 1;
      const token = fields.task_token ?? `token-${tokens}`;
      queue.push({
        task_token: token, task_run_id: `tr-${tokens}`, execution_id: 'ex-1', namespace: 'ns', flow_id: 'f',
        flow_revision: 1, task_id: `t${tokens}`, task_type: 'test.Task', attempt: 1, properties_json: '{}',
        idempotency_key: `ex-1:tr-${tokens}`, value: '', timeout_seconds: 0, ...fields,
      });
      return token;
    },
    stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
    kill: () => server.forceShutdown(),
  };
}

/** Polls `predicate` every 10 ms until truthy; rejects after `ms`. */
export async function until(predicate, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A logger that keeps lines (so tests stay quiet and can assert on them). */
export function memoryLogger() {
  const lines = [];
  const at = (level) => (message) => lines.push(`${level} ${message}`);
  return { lines, debug: at('DEBUG'), info: at('INFO'), warn: at('WARN'), error: at('ERROR') };
}
