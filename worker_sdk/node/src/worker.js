/**
 * The worker: registers, long-polls the control plane, runs task runs and reports them (mirrors
 * the Python SDK's `worker_sdk/worker.py`, same protocol and names in camelCase).
 *
 * Protocol (`protos/kestrel/v1/worker.proto`):
 *
 * 1. `RegisterWorker` with every registered task type; retried with capped, jittered
 *    exponential backoff while the control plane is unreachable.
 * 2. `PollTaskRuns` in a loop with `max_task_runs` = free slots, `wait_seconds` =
 *    `pollWaitSeconds` and a client deadline {@link POLL_DEADLINE_MARGIN_SECONDS} longer.
 *    FAILED_PRECONDITION → register again; UNAVAILABLE and other errors → backoff.
 * 3. Per task run: a fresh working directory, a {@link LogBuffer} sending `LogService.AppendLogs`
 *    with the task token, a heartbeat loop (`RecordTaskRunHeartbeat` every
 *    `heartbeatIntervalSeconds`, each success extends the lease), the task's timeout, then
 *    exactly one `CompleteTaskRun` or `FailTaskRun` after the last log line was sent; a
 *    `CompleteTaskRun` asks for one more task run (`max_next_task_runs`, eager dispatch) and
 *    starts what it returns.
 *    `cancel_requested` → the task's AbortSignal is aborted and the run is failed with reason
 *    CANCELLED; NOT_FOUND from a heartbeat or a report → the lease was lost: the task is aborted
 *    and its result dropped (with a local warning). A report failing with a transient status
 *    (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) is retried with the same token, with backoff,
 *    until {@link REPORT_GRACE_SECONDS} past the lease's last known expiry (a control plane that
 *    was down reaps leases only once back, so a late report can still win; otherwise NOT_FOUND).
 * 4. `WorkerHeartbeat` at the same interval (at most every {@link CANCEL_CHECK_SECONDS} while
 *    task runs are running): its `cancel_task_run_ids` stop killed task runs at once.
 * 5. Stop (SIGTERM/SIGINT or {@link Worker#stop}): polling stops, running task runs get
 *    `shutdownGraceSeconds` to finish, the rest are aborted and handed back with FailTaskRun
 *    reason WORKER_SHUTDOWN, then `ShutdownWorker`. A second signal (or `stop({force: true})`)
 *    skips the grace period.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LogBuffer, TaskContext, TaskFailure, TaskLogger, TaskResult } from './context.js';
import { defaultRegistry, UnknownTaskTypeError } from './registry.js';
import { RpcError, WorkerClient, connectionFromEnv, fromTimestamp } from './client.js';
import { TaskKV, TaskStorage } from './storage.js';

export const DEFAULT_SERVER = '127.0.0.1:6570';
/** How long the server may hold one PollTaskRuns call (seconds). */
export const POLL_WAIT_SECONDS = 20;
/** The poll's client deadline is `wait_seconds` plus this (seconds). */
export const POLL_DEADLINE_MARGIN_SECONDS = 10;
/** Default time running task runs may still finish after a stop request (seconds). */
export const DEFAULT_SHUTDOWN_GRACE_SECONDS = 5;
/** Used when RegisterWorker answers no heartbeat interval (seconds). */
export const DEFAULT_HEARTBEAT_SECONDS = 5;
/** Time an aborted task gets to settle before it is reported anyway (seconds). */
export const CANCEL_GRACE_SECONDS = 5;
/** Longest gap between worker heartbeats while task runs are running: they carry kills (seconds). */
export const CANCEL_CHECK_SECONDS = 1;
/**
 * How long past its lease's last known expiry a worker keeps retrying a result report
 * (CompleteTaskRun/FailTaskRun) that fails with a transient error (seconds). A control plane
 * that was down reaps expired leases only once it is back, so a report arriving before that
 * still wins; after it, the report is refused with NOT_FOUND and the worker stops trying.
 */
export const REPORT_GRACE_SECONDS = 30;
/** Deadline of unary calls (seconds). */
export const RPC_TIMEOUT_SECONDS = 10;
/** Longer log messages are cut (with a marker) so that every AppendLogs call stays small. */
export const MAX_LOG_MESSAGE_CHARS = 256 * 1024;
export const BACKOFF_BASE_SECONDS = 0.5;
export const BACKOFF_CAP_SECONDS = 30;

const PACKAGE = JSON.parse(readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8'));
/** What the worker reports as its SDK in RegisterWorker. */
export const SDK = `node/${PACKAGE.version}`;

const TRANSIENT = new Set(['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'ABORTED']);
const FATAL_ON_REGISTER = new Set(['INVALID_ARGUMENT', 'UNIMPLEMENTED', 'UNAUTHENTICATED', 'PERMISSION_DENIED']);

/** Why an attempt is reported failed (the contract's `FailureReason` enum names). */
export const FailureReason = Object.freeze({
  TASK_ERROR: 'FAILURE_REASON_TASK_ERROR',
  WORKER_SHUTDOWN: 'FAILURE_REASON_WORKER_SHUTDOWN',
  TIMEOUT: 'FAILURE_REASON_TIMEOUT',
  CANCELLED: 'FAILURE_REASON_CANCELLED',
});

/** Why a running task is being stopped (the `reason` of its aborted AbortSignal). */
export const StopReason = Object.freeze({
  CANCELLED: 'cancelled',
  LEASE_LOST: 'lease lost',
  WORKER_SHUTDOWN: 'worker shutdown',
  TIMEOUT: 'timeout',
});

/**
 * The worker cannot run, e.g. the control plane refused its registration for good
 * (INVALID_ARGUMENT, UNIMPLEMENTED, UNAUTHENTICATED, PERMISSION_DENIED).
 */
export class WorkerError extends Error {
  name = 'WorkerError';
}

/**
 * Capped exponential backoff with jitter: the n-th delay is uniform in [d/2, d],
 * d = min(cap, base * 2**n), in seconds.
 */
export class Backoff {
  /** @param {number} [base] seconds @param {number} [cap] seconds */
  constructor(base = BACKOFF_BASE_SECONDS, cap = BACKOFF_CAP_SECONDS) {
    this.base = base;
    this.cap = cap;
    this.n = 0;
  }

  /** @returns {number} the next delay in seconds. */
  next() {
    const delay = Math.min(this.cap, this.base * 2 ** Math.min(this.n, 30));
    this.n += 1;
    return delay / 2 + Math.random() * (delay / 2);
  }

  reset() {
    this.n = 0;
  }
}

/**
 * One task-run attempt handed to this worker (plain view of `TaskAssignment`).
 * @typedef {{taskToken: string, taskRunId: string, executionId: string, namespace: string,
 *   flowId: string, flowRevision: number, taskId: string, taskType: string, attempt: number,
 *   propertiesJson: string, idempotencyKey: string, value: string | null,
 *   timeoutSeconds: number | null, leaseExpiresAt: Date | null, readyAt: Date | null}} Assignment
 */

/**
 * Converts a `TaskAssignment` message (empty strings and zero timeouts become null).
 * @param {any} msg
 * @returns {Assignment}
 */
export function assignmentFromProto(msg) {
  return Object.freeze({
    taskToken: msg.task_token,
    taskRunId: msg.task_run_id,
    executionId: msg.execution_id,
    namespace: msg.namespace,
    flowId: msg.flow_id,
    flowRevision: msg.flow_revision,
    taskId: msg.task_id,
    taskType: msg.task_type,
    attempt: msg.attempt || 1,
    propertiesJson: msg.properties_json,
    idempotencyKey: msg.idempotency_key,
    value: msg.value || null,
    timeoutSeconds: msg.timeout_seconds > 0 ? msg.timeout_seconds : null,
    leaseExpiresAt: fromTimestamp(msg.lease_expires_at),
    readyAt: fromTimestamp(msg.ready_at),
  });
}

const LEVEL_RANK = { DEBUG: 10, INFO: 20, WARN: 30, ERROR: 40 };

/**
 * The default process logger: `<ISO time> LEVEL kestrel.worker: message` lines on stderr, at
 * `KESTREL_LOG_LEVEL` (DEBUG, INFO, WARN, ERROR; default INFO) and above.
 * @returns {{debug: Function, info: Function, warn: Function, error: Function}}
 */
export function consoleLogger(name = 'kestrel.worker') {
  const min = LEVEL_RANK[(process.env.KESTREL_LOG_LEVEL ?? 'INFO').toUpperCase()] ?? 20;
  const at = (level) => (message) => {
    if (LEVEL_RANK[level] >= min) process.stderr.write(`${new Date().toISOString()} ${level} ${name}: ${message}\n`);
  };
  return { debug: at('DEBUG'), info: at('INFO'), warn: at('WARN'), error: at('ERROR') };
}

/**
 * A promise with its resolve function and a `done` flag the owner sets.
 * @returns {{promise: Promise<any>, resolve: (value?: any) => void, done: boolean}}
 */
function deferred() {
  /** @type {(value?: any) => void} */
  let resolve = () => {};
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve, done: false };
}

/** Resolves after `seconds` or as soon as `promise` settles, whichever comes first. */
async function within(promise, seconds) {
  const timer = new AbortController();
  try {
    await Promise.race([promise.then(() => undefined, () => undefined), sleep(seconds * 1000, undefined, { signal: timer.signal }).catch(() => undefined)]);
  } finally {
    timer.abort();
  }
}

/** Book-keeping of one running attempt. */
class TaskRun {
  /** @param {Assignment} assignment */
  constructor(assignment) {
    this.assignment = assignment;
    this.controller = new AbortController();
    /** @type {string | null} */
    this.stopReason = null;
    this.stopped = deferred();
    this.reported = deferred();
    /** Local time (ms) of the lease's last known expiry (the server's, from the assignment or a heartbeat). */
    this.leaseDeadline = assignment.leaseExpiresAt?.getTime() ?? Date.now();
  }

  /** @param {string} reason one of {@link StopReason} */
  requestStop(reason) {
    if (this.stopReason === null) {
      this.stopReason = reason;
      this.stopped.resolve(reason);
    }
  }

  markReported() {
    this.reported.done = true;
    this.reported.resolve();
  }

  toString() {
    const a = this.assignment;
    return `${a.executionId}/${a.taskId} (task run ${a.taskRunId}, attempt ${a.attempt})`;
  }
}

/**
 * A worker: runs the task types of a registry for one control plane.
 *
 * ```js
 * const worker = new Worker('127.0.0.1:6570', { concurrency: 4 });
 * await worker.run();   // until SIGTERM/SIGINT or worker.stop()
 * ```
 */
export class Worker {
  /**
   * @param {string} [server] `HOST:PORT` of the control plane's gRPC API.
   * @param {{concurrency?: number, workerGroup?: string, labels?: Record<string, string>,
   *   workerId?: string, registry?: import('./registry.js').TaskRegistry, hostname?: string,
   *   shutdownGraceSeconds?: number, pollWaitSeconds?: number, reportGraceSeconds?: number,
   *   logger?: {debug: Function, info: Function, warn: Function, error: Function},
   *   connection?: import('./client.js').Connection}} [options]
   *   `concurrency`: most task runs at once (>= 1, default 4); `workerGroup`: Kestra
   *   `workerGroup.key` ('' = default group); `registry`: default {@link defaultRegistry};
   *   `shutdownGraceSeconds`: on stop, how long running task runs may still finish before they
   *   are handed back; `pollWaitSeconds`: `wait_seconds` of each poll (the server caps it);
   *   `reportGraceSeconds`: see {@link REPORT_GRACE_SECONDS}; `connection`: API token and TLS
   *   files (default from `KESTREL_TOKEN` and `KESTREL_TLS_*`).
   * @throws {RangeError} concurrency < 1 or negative durations.
   */
  constructor(server = DEFAULT_SERVER, {
    concurrency = 4, workerGroup = '', labels = {}, workerId, registry = defaultRegistry, hostname,
    shutdownGraceSeconds = DEFAULT_SHUTDOWN_GRACE_SECONDS, pollWaitSeconds = POLL_WAIT_SECONDS,
    reportGraceSeconds = REPORT_GRACE_SECONDS, logger, connection = connectionFromEnv(),
  } = {}) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
    if (shutdownGraceSeconds < 0 || pollWaitSeconds < 0 || reportGraceSeconds < 0) throw new RangeError('durations must not be negative');
    this.server = server;
    /** @type {import('./client.js').Connection} */
    this.connection = connection;
    this.concurrency = concurrency;
    this.workerGroup = workerGroup;
    this.labels = { ...labels };
    this.hostname = hostname ?? os.hostname();
    this.registry = registry;
    this.shutdownGraceSeconds = shutdownGraceSeconds;
    this.pollWaitSeconds = pollWaitSeconds;
    this.reportGraceSeconds = reportGraceSeconds;
    this.heartbeatIntervalSeconds = DEFAULT_HEARTBEAT_SECONDS;
    this.leaseSeconds = 0;
    this.log = logger ?? consoleLogger();
    this._workerId = workerId ?? `${this.hostname}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this._stop = deferred();
    this._force = deferred();
    this._ready = deferred();
    this._registration = 0;
    /** @type {Promise<boolean> | null} */
    this._registering = null;
    this._inUse = 0;
    this._slotFreed = deferred();
    /** @type {Map<string, TaskRun>} */
    this._runs = new Map();
    /** @type {Set<Promise<void>>} */
    this._tasks = new Set();
    /** @type {{cancel(): void} | null} */
    this._pollCall = null;
    /** @type {WorkerClient | null} */
    this._client = null;
  }

  /** This worker's id (the server's choice once registered, if it chose another). */
  get workerId() {
    return this._workerId;
  }

  /**
   * Runs the worker until it is stopped.
   * @param {{handleSignals?: boolean}} [options] install SIGTERM/SIGINT handlers: the first
   *   signal drains, a second one stops at once.
   * @returns {Promise<void>}
   * @throws {WorkerError} the control plane refused the registration for good.
   */
  async run({ handleSignals = true } = {}) {
    const onSignal = (sig) => {
      if (this._stop.done) {
        this.log.warn(`${sig} again: handing running task runs back now`);
        this.stop({ force: true });
      } else {
        this.log.info(`${sig}: draining (a second signal stops at once)`);
        this.stop();
      }
    };
    if (handleSignals) {
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    }
    this._client = new WorkerClient(this.server, { rpcTimeoutSeconds: RPC_TIMEOUT_SECONDS, connection: this.connection });
    try {
      if (await this.#registerUntilOk()) {
        this._ready.done = true;
        this._ready.resolve(true);
        await this.#serve();
      }
    } finally {
      this._ready.done = false;
      if (handleSignals) {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
      this._client.close();
    }
  }

  /**
   * Asks the worker to stop; returns at once; also before {@link Worker#run}.
   * @param {{force?: boolean}} [options] `force`: skip the grace period.
   */
  stop({ force = false } = {}) {
    if (force && !this._force.done) {
      this._force.done = true;
      this._force.resolve();
    }
    if (!this._stop.done) {
      this._stop.done = true;
      this._stop.resolve();
    }
    this._pollCall?.cancel();
  }

  /**
   * Resolves true once the worker is registered and polling, false after `timeoutSeconds`.
   * @param {number} [timeoutSeconds]
   * @returns {Promise<boolean>}
   */
  async waitReady(timeoutSeconds = 30) {
    if (this._ready.done) return true;
    await within(this._ready.promise, timeoutSeconds);
    return this._ready.done;
  }

  // ------------------------------------------------------------------ lifecycle

  async #serve() {
    const heartbeat = this.#workerHeartbeatLoop();
    let error = null;
    try {
      await this.#pollLoop();
    } catch (exc) {
      error = exc;
    }
    await this.#drain();
    this.stop();
    await heartbeat;
    await this.#shutdown();
    if (error) throw error;
  }

  async #drain() {
    const pending = [...this._runs.values()].filter((run) => !run.reported.done);
    if (pending.length === 0) return;
    if (!this._force.done && this.shutdownGraceSeconds > 0) {
      this.log.info(`waiting up to ${this.shutdownGraceSeconds} s for ${pending.length} running task run(s) to finish`);
      await within(Promise.race([Promise.all(pending.map((run) => run.reported.promise)), this._force.promise]), this.shutdownGraceSeconds);
    }
    const remaining = pending.filter((run) => !run.reported.done);
    if (remaining.length === 0) return;
    this.log.warn(`handing ${remaining.length} task run(s) back to the control plane`);
    for (const run of remaining) run.requestStop(StopReason.WORKER_SHUTDOWN);
    await within(Promise.all(remaining.map((run) => run.reported.promise)), CANCEL_GRACE_SECONDS + 2 * RPC_TIMEOUT_SECONDS);
  }

  async #shutdown() {
    let response;
    try {
      response = await this.#call(() => this._client.shutdownWorker(this._workerId), 2);
    } catch (exc) {
      this.log.warn(`ShutdownWorker failed (${exc.codeName ?? exc}): ${exc.details ?? ''}`);
      return;
    }
    // Task runs handed back by this worker were re-queued by their FailTaskRun(WORKER_SHUTDOWN);
    // the server re-queues here only those never reported (e.g. claimed by a cancelled poll).
    if (response.requeued_task_runs) {
      this.log.info(`worker ${this._workerId} stopped; the control plane re-queued ${response.requeued_task_runs} unreported task run(s)`);
    } else {
      this.log.info(`worker ${this._workerId} stopped`);
    }
  }

  // ------------------------------------------------------------------ registration and polling

  /** Registers, retrying with backoff; false when stopped before succeeding. */
  async #registerUntilOk() {
    const request = {
      worker_id: this._workerId,
      hostname: this.hostname,
      sdk: SDK,
      task_types: this.registry.taskTypes(),
      worker_group: this.workerGroup,
      labels: Object.keys(this.labels).sort().map((key) => ({ key, value: String(this.labels[key]) })),
      concurrency: this.concurrency,
    };
    const backoff = new Backoff();
    let failures = 0;
    while (!this._stop.done) {
      let response;
      try {
        response = await this._client.registerWorker(request);
      } catch (exc) {
        if (!(exc instanceof RpcError)) throw exc;
        if (FATAL_ON_REGISTER.has(exc.codeName)) throw new WorkerError(`RegisterWorker refused: ${exc.codeName}: ${exc.details}`);
        failures += 1;
        const say = failures === 1 || failures === 10 || failures % 50 === 0 ? 'warn' : 'debug';
        this.log[say](`control plane ${this.server} not reachable (${exc.codeName}); retrying`);
        await this.#sleepOrStop(backoff.next());
        continue;
      }
      this._workerId = response.worker_id || this._workerId;
      this.heartbeatIntervalSeconds = response.heartbeat_interval_seconds || DEFAULT_HEARTBEAT_SECONDS;
      this.leaseSeconds = response.lease_seconds;
      this._registration += 1;
      this.log.info(`worker ${this._workerId} registered with ${this.server} (${request.task_types.length} task types, concurrency ${this.concurrency})`);
      return true;
    }
    return false;
  }

  /** Registers again unless someone already did since registration `seen`. */
  async #reregister(seen) {
    while (this._registering) await this._registering;
    if (this._registration !== seen) return true;
    this.log.info(`control plane does not know worker ${this._workerId}: registering again`);
    this._registering = this.#registerUntilOk();
    try {
      return await this._registering;
    } finally {
      this._registering = null;
    }
  }

  async #pollLoop() {
    const backoff = new Backoff();
    while (!this._stop.done) {
      const free = await this.#freeSlots();
      if (this._stop.done) return;
      const seen = this._registration;
      const request = { worker_id: this._workerId, max_task_runs: free, wait_seconds: this.pollWaitSeconds };
      let response;
      try {
        response = await this._client.pollTaskRuns(request, {
          marginSeconds: POLL_DEADLINE_MARGIN_SECONDS,
          onCall: (call) => { this._pollCall = call; },
        });
      } catch (exc) {
        if (!(exc instanceof RpcError)) throw exc;
        if (this._stop.done) return;
        if (exc.codeName === 'FAILED_PRECONDITION') {
          if (!(await this.#reregister(seen))) return;
          continue;
        }
        if (exc.codeName === 'DEADLINE_EXCEEDED') continue; // held longer than asked; poll again
        if (FATAL_ON_REGISTER.has(exc.codeName)) throw new WorkerError(`PollTaskRuns refused: ${exc.codeName}: ${exc.details}`);
        const delay = backoff.next();
        this.log.warn(`PollTaskRuns failed (${exc.codeName}: ${exc.details}); retrying in ${delay.toFixed(1)} s`);
        await this.#sleepOrStop(delay);
        continue;
      } finally {
        this._pollCall = null;
      }
      backoff.reset();
      for (const message of response.assignments) this.#start(assignmentFromProto(message));
    }
  }

  async #freeSlots() {
    while (this._inUse >= this.concurrency && !this._stop.done) {
      this._slotFreed = deferred();
      await Promise.race([this._slotFreed.promise, this._stop.promise]);
    }
    return this.concurrency - this._inUse;
  }

  /**
   * Keeps the worker alive and learns which running task runs were killed: while task runs are
   * running it beats every {@link CANCEL_CHECK_SECONDS} at most, so a kill stops them within
   * about a second instead of at their own task-run heartbeat.
   */
  async #workerHeartbeatLoop() {
    while (!this._stop.done) {
      const interval = this._runs.size > 0 ? Math.min(this.heartbeatIntervalSeconds, CANCEL_CHECK_SECONDS) : this.heartbeatIntervalSeconds;
      await within(this._stop.promise, interval);
      if (this._stop.done) return;
      const seen = this._registration;
      let response;
      try {
        response = await this._client.workerHeartbeat(this._workerId, Math.max(this.heartbeatIntervalSeconds, 1));
      } catch (exc) {
        if (exc.codeName === 'FAILED_PRECONDITION') await this.#reregister(seen);
        else this.log.debug(`WorkerHeartbeat failed: ${exc.codeName ?? exc}`);
        continue;
      }
      const cancelled = new Set(response.cancel_task_run_ids ?? []);
      for (const run of this._runs.values()) {
        if (cancelled.has(run.assignment.taskRunId) && run.stopReason === null) {
          this.log.info(`${run}: execution killed, cancelling`);
          run.requestStop(StopReason.CANCELLED);
        }
      }
    }
  }

  async #sleepOrStop(seconds) {
    await within(this._stop.promise, seconds);
  }

  /**
   * Calls an RPC, retrying transient errors with a short backoff.
   * @param {() => Promise<any>} fn
   * @param {number} attempts
   */
  async #call(fn, attempts) {
    const backoff = new Backoff(0.2, 5);
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await fn();
      } catch (exc) {
        if (!(exc instanceof RpcError) || !TRANSIENT.has(exc.codeName) || attempt >= attempts) throw exc;
        await sleep(backoff.next() * 1000);
      }
    }
  }

  // ------------------------------------------------------------------ one task run

  /** @param {Assignment} assignment */
  #start(assignment) {
    if (this._runs.has(assignment.taskToken)) return; // the same attempt delivered twice
    const run = new TaskRun(assignment);
    this._runs.set(assignment.taskToken, run);
    this._inUse += 1;
    const promise = this.#runTask(run).finally(() => {
      this._tasks.delete(promise);
    });
    this._tasks.add(promise);
  }

  /** @param {TaskRun} run */
  async #runTask(run) {
    const a = run.assignment;
    const workdir = mkdtempSync(path.join(os.tmpdir(), `kestrel-${safe(a.taskId)}-`));
    const buffer = new LogBuffer((records) => this.#sendLogs(a.taskToken, records));
    const ctx = new TaskContext({
      executionId: a.executionId,
      taskRunId: a.taskRunId,
      taskId: a.taskId,
      taskType: a.taskType,
      attempt: a.attempt,
      namespace: a.namespace,
      flowId: a.flowId,
      flowRevision: a.flowRevision,
      value: a.value,
      idempotencyKey: a.idempotencyKey,
      timeoutSeconds: a.timeoutSeconds,
      workingDir: workdir,
      signal: run.controller.signal,
      log: new TaskLogger((record) => buffer.append(cutLine(record))),
      storage: new TaskStorage(this._client, a.taskToken),
      kv: new TaskKV(this._client, a.taskToken),
    });
    this.log.debug(`running ${run} [${a.taskType}]`);
    const heartbeatStop = deferred();
    let settled = Promise.resolve();
    try {
      buffer.start();
      const heartbeat = this.#taskHeartbeatLoop(run, heartbeatStop);
      let outcome;
      try {
        ({ outcome, settled } = await this.#execute(run, ctx));
      } finally {
        heartbeatStop.done = true;
        heartbeatStop.resolve();
        await heartbeat;
        await buffer.close(); // every log line precedes the result
      }
      await this.#report(run, outcome);
      run.markReported();
      let returned = false;
      settled.then(() => { returned = true; });
      await sleep(0);
      if (!returned) {
        this.log.warn(`${run} ignores its AbortSignal; its slot stays busy until it returns`);
        await settled;
      }
    } catch (exc) {
      this.log.error(`internal error while running ${run}: ${exc?.stack ?? exc}`);
    } finally {
      run.markReported();
      this._runs.delete(a.taskToken);
      this._inUse -= 1;
      this._slotFreed.resolve();
      rmSync(workdir, { recursive: true, force: true });
    }
  }

  /**
   * Runs the task function; returns its outcome and a promise settled once the function has
   * really finished (an aborted task may go on for a while).
   * @param {TaskRun} run
   * @param {TaskContext} ctx
   */
  async #execute(run, ctx) {
    const a = run.assignment;
    let definition;
    try {
      definition = this.registry.get(a.taskType);
    } catch (exc) {
      if (!(exc instanceof UnknownTaskTypeError)) throw exc;
      return { outcome: failure(ctx, `Task type ${JSON.stringify(a.taskType)} is not registered on worker ${this._workerId}`), settled: Promise.resolve() };
    }
    let props;
    try {
      props = a.propertiesJson ? JSON.parse(a.propertiesJson) : {};
    } catch (exc) {
      return { outcome: failure(ctx, `Invalid properties JSON: ${exc.message}`), settled: Promise.resolve() };
    }
    if (props === null || typeof props !== 'object' || Array.isArray(props)) {
      return { outcome: failure(ctx, `Properties must be a JSON object, got ${Array.isArray(props) ? 'array' : typeof props}`), settled: Promise.resolve() };
    }

    const result = (async () => definition.fn(ctx, props))();
    const settled = result.then(() => undefined, () => undefined);
    let timer = null;
    const timedOut = a.timeoutSeconds === null
      ? new Promise(() => {})
      : new Promise((resolve) => { timer = setTimeout(() => resolve(StopReason.TIMEOUT), a.timeoutSeconds * 1000); });
    let finished = false;
    try {
      await Promise.race([settled.then(() => { finished = true; }), run.stopped.promise, timedOut]);
    } finally {
      if (timer) clearTimeout(timer);
    }

    if (run.stopReason === StopReason.LEASE_LOST) {
      run.controller.abort(StopReason.LEASE_LOST);
      await within(settled, CANCEL_GRACE_SECONDS);
      return { outcome: { success: false, drop: true }, settled };
    }
    if (finished) return { outcome: await outcomeOf(ctx, definition, result), settled };
    const reason = run.stopReason ?? StopReason.TIMEOUT;
    run.controller.abort(reason);
    await within(settled, CANCEL_GRACE_SECONDS);
    if (reason === StopReason.CANCELLED) {
      const message = 'Task run cancelled: the execution was killed';
      ctx.log.warn(message);
      return { outcome: failure(ctx, message, FailureReason.CANCELLED, { log: false }), settled };
    }
    if (reason === StopReason.WORKER_SHUTDOWN) {
      const message = `Worker ${this._workerId} is shutting down; the task run is handed back`;
      ctx.log.warn(message);
      return { outcome: failure(ctx, message, FailureReason.WORKER_SHUTDOWN, { log: false }), settled };
    }
    return { outcome: failure(ctx, `Timeout after ${a.timeoutSeconds} seconds`, FailureReason.TIMEOUT), settled };
  }

  /**
   * Heartbeats until `stop` resolves: each success moves the lease deadline; NOT_FOUND stops the
   * task (lease lost); `cancel_requested` stops it with CANCELLED (heartbeats go on until it has
   * stopped, so the lease does not lapse while it winds down).
   * @param {TaskRun} run
   * @param {{promise: Promise<void>, done: boolean}} stop
   */
  async #taskHeartbeatLoop(run, stop) {
    const token = run.assignment.taskToken;
    for (;;) {
      await within(stop.promise, this.heartbeatIntervalSeconds);
      if (stop.done) return;
      let response;
      try {
        response = await this._client.recordTaskRunHeartbeat(token, Math.max(this.heartbeatIntervalSeconds, 1));
      } catch (exc) {
        if (exc.codeName === 'NOT_FOUND') {
          this.log.warn(`lease of ${run} lost; stopping it and dropping its result`);
          run.requestStop(StopReason.LEASE_LOST);
          return;
        }
        this.log.debug(`heartbeat of ${run} failed: ${exc.codeName ?? exc}`);
        continue;
      }
      const expires = fromTimestamp(response.lease_expires_at);
      if (expires) run.leaseDeadline = expires.getTime();
      if (response.cancel_requested && run.stopReason === null) {
        this.log.info(`${run}: execution killed, cancelling`);
        run.requestStop(StopReason.CANCELLED);
      }
    }
  }

  /**
   * Sends the one result of an attempt. Transient errors are retried with the same token until
   * `reportGraceSeconds` past the lease's last known expiry; NOT_FOUND means the lease was lost:
   * the result is dropped.
   * @param {TaskRun} run
   * @param {{success: boolean, drop?: boolean, outputsJson?: string, warning?: boolean, message?: string, reason?: string}} outcome
   */
  async #report(run, outcome) {
    if (outcome.drop) return;
    const token = run.assignment.taskToken;
    const deadline = Math.max(run.leaseDeadline, Date.now()) + this.reportGraceSeconds * 1000;
    // Eager dispatch: this run's slot is about to be free, so ask for one task run in the same
    // call (none while stopping: a stopping worker takes no new work).
    const eager = this._stop.done ? 0 : 1;
    const send = outcome.success
      ? () => this._client.completeTaskRun(token, outcome.outputsJson ?? '', outcome.warning ? 'STATE_WARNING' : 'STATE_SUCCESS', eager)
      : () => this._client.failTaskRun(token, outcome.message ?? '', outcome.reason ?? FailureReason.TASK_ERROR, outcome.outputsJson ?? '');
    try {
      try {
        const response = await this.#callUntil(run, send, deadline);
        for (const message of response?.assignments ?? []) await this.#startOrHandBack(assignmentFromProto(message));
      } catch (exc) {
        if (!(outcome.success && exc.codeName === 'RESOURCE_EXHAUSTED')) throw exc;
        // The outputs exceed the server's message limit: the task run fails instead.
        const message = `Task outputs are too large to report (${Buffer.byteLength(outcome.outputsJson ?? '')} bytes): ${exc.details}`;
        this.log.error(`${run}: ${message}`);
        await this.#callUntil(run, () => this._client.failTaskRun(token, message, FailureReason.TASK_ERROR, ''), deadline);
      }
    } catch (exc) {
      if (exc.codeName === 'NOT_FOUND') {
        this.log.warn(`lease of ${run} lost before its result was reported; result dropped`);
      } else {
        this.log.error(`could not report ${run} (${exc.codeName ?? exc}: ${exc.details ?? ''}); the control plane re-queues it once the lease has expired`);
      }
      return;
    }
    this.log.debug(`${run} reported: ${outcome.success ? 'success' : outcome.reason}`);
  }

  /**
   * Starts a task run handed out eagerly with a completion, or, when the worker began stopping
   * while the report was in flight (the drain waits only for runs it already knew), hands it
   * straight back unstarted (FailTaskRun WORKER_SHUTDOWN: re-queued).
   * @param {Assignment} assignment
   */
  async #startOrHandBack(assignment) {
    if (!this._stop.done) {
      this.#start(assignment);
      return;
    }
    try {
      await this.#call(() => this._client.failTaskRun(assignment.taskToken, 'worker stopping: handed back unstarted',
        FailureReason.WORKER_SHUTDOWN), 2);
    } catch (exc) { // its lease expires and it is re-dispatched anyway
      this.log.warn(`could not hand back task run ${assignment.taskRunId} (${exc.codeName ?? exc})`);
    }
  }

  /**
   * Calls `send` (backoff 0.2 s doubling to 5 s) until it succeeds, fails for good, or the next
   * try would come after `deadline` (local ms; then the last error is thrown). Reports carry the
   * same task token each time, so a retry the server already applied is harmless.
   * @param {TaskRun} run
   * @param {() => Promise<any>} send
   * @param {number} deadline
   */
  async #callUntil(run, send, deadline) {
    const backoff = new Backoff(0.2, 5);
    for (;;) {
      try {
        return await send();
      } catch (exc) {
        if (!(exc instanceof RpcError) || !TRANSIENT.has(exc.codeName)) throw exc;
        const delay = backoff.next();
        if (Date.now() + delay * 1000 > deadline) throw exc;
        this.log.warn(`reporting ${run} failed (${exc.codeName}); retrying in ${delay.toFixed(1)} s`);
        await sleep(delay * 1000);
      }
    }
  }

  /** Sends one batch; throws on transient errors so that the buffer keeps it. */
  async #sendLogs(token, records) {
    try {
      await this.#call(() => this._client.appendLogs(token, records), 2);
    } catch (exc) {
      if (exc instanceof RpcError && TRANSIENT.has(exc.codeName)) throw exc;
      this.log.warn(`AppendLogs refused (${exc.codeName ?? exc}: ${exc.details ?? ''}): ${records.length} line(s) dropped`);
    }
  }
}

// ---------------------------------------------------------------------- outcome helpers

function cutLine(record) {
  if (record.message.length <= MAX_LOG_MESSAGE_CHARS) return record;
  const cut = record.message.length - MAX_LOG_MESSAGE_CHARS;
  return { ...record, message: `${record.message.slice(0, MAX_LOG_MESSAGE_CHARS)}… [${cut} characters cut]` };
}

async function outcomeOf(ctx, definition, result) {
  let value;
  try {
    value = await result;
  } catch (exc) {
    return errorOutcome(ctx, exc);
  }
  let outputs = value;
  let warning = false;
  if (value instanceof TaskResult) {
    outputs = value.outputs;
    warning = Boolean(value.warning);
  } else if (value !== null && value !== undefined && (typeof value !== 'object' || Array.isArray(value))) {
    return failure(ctx, `TypeError: task ${definition.type} returned ${Array.isArray(value) ? 'an array' : typeof value}; expected an object, a TaskResult or nothing`);
  }
  let outputsJson;
  try {
    outputsJson = dumpOutputs(outputs);
  } catch (exc) {
    return failure(ctx, `${exc.name}: outputs are not JSON-serialisable: ${exc.message}`);
  }
  return { success: true, outputsJson, warning };
}

/**
 * The outcome of a task that threw: a {@link TaskFailure}'s message as is, any other error as
 * `Name: message` with its stack logged at ERROR.
 */
function errorOutcome(ctx, exc) {
  if (exc instanceof TaskFailure) return failure(ctx, exc.message, FailureReason.TASK_ERROR, { outputs: exc.outputs });
  const message = exc instanceof Error ? `${exc.name}: ${exc.message}` : `Error: ${String(exc)}`;
  ctx.log.error(exc instanceof Error && exc.stack ? `${message}\n${exc.stack}` : message);
  return failure(ctx, message, FailureReason.TASK_ERROR, { log: false });
}

/**
 * A failure outcome; logs `message` at ERROR unless `log` is false.
 * @param {TaskContext} ctx
 * @param {string} message
 * @param {string} [reason] a {@link FailureReason} value
 * @param {{outputs?: Record<string, any>, log?: boolean}} [options]
 */
function failure(ctx, message, reason = FailureReason.TASK_ERROR, { outputs = undefined, log = true } = {}) {
  if (log) ctx.log.error(message);
  let outputsJson = '';
  try {
    outputsJson = dumpOutputs(outputs);
  } catch {
    outputsJson = '';
  }
  return { success: false, message, reason, outputsJson };
}

/**
 * Serialises outputs as JSON object text ('' for none). Dates become ISO strings, Sets and Maps
 * arrays and objects, BigInts numbers when safe; NaN and ±Infinity are refused (JSON has none).
 * @param {Record<string, any> | null | undefined} outputs
 * @returns {string}
 * @throws {TypeError} a value cannot be represented in JSON.
 */
export function dumpOutputs(outputs) {
  if (outputs === null || outputs === undefined) return '';
  return JSON.stringify(outputs, (key, value) => {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`${key || 'value'} is ${value}`);
    if (typeof value === 'bigint') {
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) throw new TypeError(`${key} is a BigInt beyond 2^53`);
      return Number(value);
    }
    if (value instanceof Set) return [...value];
    if (value instanceof Map) return Object.fromEntries(value);
    return value;
  });
}

function safe(text) {
  return (text.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40)) || 'task';
}

// ---------------------------------------------------------------------- entry points

/**
 * Imports JavaScript modules (paths or package names) so that their `task()` calls register.
 * @param {string[]} modules
 * @throws {Error} a module cannot be imported.
 */
export async function importModules(modules) {
  for (const name of modules) {
    const spec = name.startsWith('.') || path.isAbsolute(name) || name.endsWith('.js') || name.endsWith('.mjs')
      ? pathToFileURL(path.resolve(name)).href
      : name;
    await import(spec);
  }
}

/**
 * Runs a worker until SIGTERM/SIGINT (what `kestrel-worker` calls).
 * @param {{server?: string, concurrency?: number, workerGroup?: string,
 *   labels?: Record<string, string>, modules?: string[], shutdownGraceSeconds?: number,
 *   connection?: import('./client.js').Connection}} [options] `connection`: API token and TLS
 *   files (default from `KESTREL_TOKEN` and `KESTREL_TLS_*`).
 * @throws {WorkerError} the control plane refused the registration for good.
 */
export async function runWorker({ server = DEFAULT_SERVER, concurrency = 4, workerGroup = '', labels = {}, modules = [], shutdownGraceSeconds = DEFAULT_SHUTDOWN_GRACE_SECONDS, connection = connectionFromEnv() } = {}) {
  await importModules(modules);
  await new Worker(server, { concurrency, workerGroup, labels, shutdownGraceSeconds, connection }).run();
}
