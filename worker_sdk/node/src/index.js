/**
 * Kestrel worker SDK for Node.js: run Kestra-style custom task types as a worker of a Kestrel
 * control plane, over the same gRPC contract (`protos/kestrel/v1`) as the Python SDK.
 *
 * ```js
 * import { task, Worker, TaskFailure } from '@kestrel/worker-sdk';
 *
 * task('my.company.Hello', async (ctx, props) => {
 *   ctx.log.info(`hello ${props.name}`);
 *   return { greeting: `hello ${props.name}` };
 * });
 *
 * await new Worker('127.0.0.1:6570', { concurrency: 4 }).run();
 * ```
 *
 * @module
 */
export { LEVELS, LogBuffer, TaskContext, TaskFailure, TaskLogger, TaskResult, normalizeLevel } from './context.js';
export {
  DuplicateTaskTypeError, LEGACY_ALIASES, TaskRegistry, UnknownTaskTypeError, canonicalType, defaultRegistry, task,
} from './registry.js';
export { RpcError, STATUS_NAMES, WorkerClient, bearerInterceptor, channelCredentials, connectionFromEnv } from './client.js';
export { CHUNK_SIZE, ChecksumMismatchError, KV_TYPES, TaskKV, TaskStorage } from './storage.js';
export {
  Backoff, CANCEL_CHECK_SECONDS, DEFAULT_SERVER, DEFAULT_SHUTDOWN_GRACE_SECONDS, FailureReason, REPORT_GRACE_SECONDS, SDK, StopReason, Worker, WorkerError,
  assignmentFromProto, dumpOutputs, importModules, runWorker,
} from './worker.js';
