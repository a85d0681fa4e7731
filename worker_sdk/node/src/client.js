/**
 * A thin promise API over the worker-facing RPCs (`WorkerService` and `LogService.AppendLogs`).
 * This module and `proto.js` are the only ones that touch gRPC: calls resolve with the plain
 * response object (snake_case fields, as in the .proto files) or reject with an {@link RpcError}
 * whose `codeName` is the gRPC status name (`NOT_FOUND`, `UNAVAILABLE`, …), so callers never
 * import @grpc/grpc-js.
 *
 * @module
 */
import fs from 'node:fs';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { loadContract } from './proto.js';

/** Largest gRPC message accepted (poll responses), as the control plane allows. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** gRPC status code number → name (`5` → `NOT_FOUND`). */
export const STATUS_NAMES = Object.freeze(
  Object.fromEntries(Object.entries(grpc.status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k])),
);

/** An RPC failed; `codeName` is the gRPC status name, `details` the server's message. */
export class RpcError extends Error {
  name = 'RpcError';
  /**
   * @param {string} method RPC name.
   * @param {number} code gRPC status code.
   * @param {string} details server message.
   */
  constructor(method, code, details) {
    super(`${method}: ${STATUS_NAMES[code] ?? code}: ${details}`);
    this.method = method;
    this.code = code;
    this.codeName = STATUS_NAMES[code] ?? String(code);
    this.details = details;
  }
}

/**
 * Converts a Date to a google.protobuf.Timestamp object.
 * @param {Date} date
 * @returns {{seconds: number, nanos: number}}
 */
export function toTimestamp(date) {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

/**
 * Converts a google.protobuf.Timestamp object (as loaded, seconds may be a string) to a Date.
 * @param {{seconds?: string | number, nanos?: number} | null | undefined} ts
 * @returns {Date | null} null when unset.
 */
export function fromTimestamp(ts) {
  if (!ts) return null;
  return new Date(Number(ts.seconds ?? 0) * 1000 + Math.floor((ts.nanos ?? 0) / 1_000_000));
}

/**
 * How to reach a control plane: an API token and TLS files (PEM paths), all optional.
 * @typedef {{token?: string, tlsCa?: string, tlsCert?: string, tlsKey?: string, tls?: boolean}} Connection
 */

/**
 * Connection settings from the environment: `KESTREL_TOKEN`, `KESTREL_TLS_CA`,
 * `KESTREL_TLS_CERT`, `KESTREL_TLS_KEY` (and `KESTREL_TLS=1` for TLS with the system roots),
 * with the defined fields of `overrides` on top.
 * @param {Record<string, string | undefined>} [env]
 * @param {Connection} [overrides]
 * @returns {Connection}
 */
export function connectionFromEnv(env = process.env, overrides = {}) {
  /** @type {Connection} */
  const out = {
    token: env.KESTREL_TOKEN || undefined,
    tlsCa: env.KESTREL_TLS_CA || undefined,
    tlsCert: env.KESTREL_TLS_CERT || undefined,
    tlsKey: env.KESTREL_TLS_KEY || undefined,
    tls: ['1', 'true', 'yes'].includes(String(env.KESTREL_TLS ?? '').toLowerCase()),
  };
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined && value !== null && value !== '') out[key] = value;
  return out;
}

/**
 * gRPC channel credentials for a connection: TLS when any TLS file (or `tls`) is set, else
 * plaintext.
 * @param {Connection} connection
 * @returns {grpc.ChannelCredentials}
 * @throws {Error} only one of tlsCert/tlsKey, or an unreadable file (named).
 */
export function channelCredentials(connection) {
  const { tlsCa, tlsCert, tlsKey, tls } = connection;
  if (!(tls || tlsCa || tlsCert || tlsKey)) return grpc.credentials.createInsecure();
  if (Boolean(tlsCert) !== Boolean(tlsKey)) throw new Error('TLS client certificate: give both --tls-cert and --tls-key');
  const read = (path, option) => {
    if (!path) return null;
    try {
      return fs.readFileSync(path);
    } catch (exc) {
      throw new Error(`${option}: cannot read ${path}: ${exc.message}`);
    }
  };
  return grpc.credentials.createSsl(read(tlsCa, '--tls-ca'), read(tlsKey, '--tls-key'), read(tlsCert, '--tls-cert'));
}

/**
 * A client interceptor adding `authorization: Bearer <token>` to every call (works on
 * plaintext and TLS channels alike).
 * @param {string} token
 * @returns {grpc.Interceptor}
 */
export function bearerInterceptor(token) {
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', `Bearer ${token}`);
      next(metadata, listener);
    },
  });
}

/** The worker-facing API of one control plane. */
export class WorkerClient {
  /**
   * @param {string} server `HOST:PORT` of the control plane's gRPC API.
   * @param {{rpcTimeoutSeconds?: number, connection?: Connection}} [options] default deadline of
   *   unary calls; API token and TLS files (default {@link connectionFromEnv}).
   */
  constructor(server, { rpcTimeoutSeconds = 10, connection = connectionFromEnv() } = {}) {
    const v1 = loadContract().kestrel.v1;
    /** @type {Record<string, any>} */
    const options = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': -1,
      'grpc.primary_user_agent': `kestrel-node-worker/${os.hostname()}`,
    };
    if (connection.token) options.interceptors = [bearerInterceptor(connection.token)];
    const credentials = channelCredentials(connection);
    this.server = server;
    this.rpcTimeoutSeconds = rpcTimeoutSeconds;
    this._workers = new v1.WorkerService(server, credentials, options);
    const shared = { ...options, channelOverride: this._workers.getChannel() };
    this._logs = new v1.LogService(server, credentials, shared);
    /** StorageService stub on the same channel (used by `storage.js`). */
    this.storageStub = new v1.StorageService(server, credentials, shared);
    /** KVService stub on the same channel (used by `storage.js`). */
    this.kvStub = new v1.KVService(server, credentials, shared);
  }

  /**
   * Calls one unary RPC.
   * @param {any} stub
   * @param {string} method
   * @param {object} request
   * @param {{timeoutSeconds?: number, onCall?: (call: {cancel(): void}) => void}} [options]
   *   `onCall` receives the call object (to cancel it).
   * @returns {Promise<any>}
   */
  call(stub, method, request, { timeoutSeconds = undefined, onCall = undefined } = {}) {
    const deadline = new Date(Date.now() + 1000 * (timeoutSeconds ?? this.rpcTimeoutSeconds));
    return new Promise((resolve, reject) => {
      const call = stub[method](request, { deadline }, (error, response) => {
        if (error) reject(new RpcError(method, error.code ?? grpc.status.UNKNOWN, error.details ?? error.message));
        else resolve(response);
      });
      onCall?.(call);
    });
  }

  /** RegisterWorker. @param {object} request @returns {Promise<{worker_id: string, heartbeat_interval_seconds: number, lease_seconds: number}>} */
  registerWorker(request) {
    return this.call(this._workers, 'RegisterWorker', request);
  }

  /**
   * PollTaskRuns with a client deadline `waitSeconds + marginSeconds`.
   * @param {{worker_id: string, max_task_runs: number, wait_seconds: number}} request
   * @param {{marginSeconds?: number, onCall?: (call: {cancel(): void}) => void}} [options]
   * @returns {Promise<{assignments: any[]}>}
   */
  pollTaskRuns(request, { marginSeconds = 10, onCall } = {}) {
    return this.call(this._workers, 'PollTaskRuns', request, { timeoutSeconds: request.wait_seconds + marginSeconds, onCall });
  }

  /** RecordTaskRunHeartbeat. @param {string} taskToken @param {number} [timeoutSeconds] */
  recordTaskRunHeartbeat(taskToken, timeoutSeconds) {
    return this.call(this._workers, 'RecordTaskRunHeartbeat', { task_token: taskToken }, { timeoutSeconds });
  }

  /**
   * CompleteTaskRun.
   * @param {string} taskToken
   * @param {string} outputsJson JSON object text, '' for none.
   * @param {'STATE_SUCCESS' | 'STATE_WARNING'} [state]
   * @param {number} [maxNext] eager dispatch: task runs to claim for this worker in the same call
   *   (`max_next_task_runs`, 0 = none); they come back as `assignments`.
   * @returns {Promise<{assignments?: object[]}>}
   */
  completeTaskRun(taskToken, outputsJson, state = 'STATE_SUCCESS', maxNext = 0) {
    return this.call(this._workers, 'CompleteTaskRun', {
      task_token: taskToken, outputs_json: outputsJson, state, max_next_task_runs: maxNext,
    });
  }

  /**
   * FailTaskRun.
   * @param {string} taskToken
   * @param {string} errorMessage
   * @param {string} reason a `FailureReason` enum name, e.g. `FAILURE_REASON_TASK_ERROR`.
   * @param {string} [outputsJson]
   */
  failTaskRun(taskToken, errorMessage, reason, outputsJson = '') {
    return this.call(this._workers, 'FailTaskRun', {
      task_token: taskToken, error_message: errorMessage, reason, outputs_json: outputsJson,
    });
  }

  /** WorkerHeartbeat. @param {string} workerId @param {number} [timeoutSeconds] */
  workerHeartbeat(workerId, timeoutSeconds) {
    return this.call(this._workers, 'WorkerHeartbeat', { worker_id: workerId }, { timeoutSeconds });
  }

  /** ShutdownWorker. @param {string} workerId @returns {Promise<{requeued_task_runs: number}>} */
  shutdownWorker(workerId) {
    return this.call(this._workers, 'ShutdownWorker', { worker_id: workerId }, { timeoutSeconds: 5 });
  }

  /**
   * LogService.AppendLogs.
   * @param {string} taskToken
   * @param {{level: string, message: string, timestamp: Date}[]} records levels as Kestra names (`INFO`).
   */
  appendLogs(taskToken, records) {
    return this.call(this._logs, 'AppendLogs', {
      task_token: taskToken,
      entries: records.map((r) => ({ level: `LOG_LEVEL_${r.level}`, message: r.message, timestamp: toTimestamp(r.timestamp) })),
    });
  }

  /** Closes the channel. */
  close() {
    this._workers.close();
  }
}
