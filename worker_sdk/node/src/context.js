/**
 * What a running task sees: its context, logger, failure and result types, and the buffer that
 * batches its log lines (mirrors the Python SDK's `worker_sdk/context.py`). Nothing here touches
 * the wire: a {@link LogBuffer} hands batches to a send function the worker provides.
 *
 * @module
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Kestra log levels, most to least verbose. */
export const LEVELS = Object.freeze(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']);

const SYNONYMS = { WARNING: 'WARN', CRITICAL: 'ERROR', FATAL: 'ERROR' };

/**
 * Returns the canonical Kestra name of a log level (`WARNING` → `WARN`, `CRITICAL`/`FATAL` →
 * `ERROR`, any case).
 * @param {string} level
 * @returns {string} one of {@link LEVELS}
 * @throws {RangeError} unknown level (the message lists the valid ones).
 */
export function normalizeLevel(level) {
  let name = String(level).trim().toUpperCase();
  name = SYNONYMS[name] ?? name;
  if (!LEVELS.includes(name)) {
    throw new RangeError(`unknown log level ${JSON.stringify(level)}; expected one of ${LEVELS.join(', ')}`);
  }
  return name;
}

/**
 * One log line of a task-run attempt.
 * @typedef {{level: string, message: string, timestamp: Date}} LogRecord
 */

/** The logger a task writes to (`ctx.log` / `ctx.logger`). */
export class TaskLogger {
  /**
   * @param {(record: LogRecord) => void} [sink] where lines go; when omitted they are kept in
   *   `records` (handy in tests).
   */
  constructor(sink) {
    /** @type {LogRecord[]} */
    this.records = [];
    this._sink = sink ?? ((record) => this.records.push(record));
  }

  /**
   * Writes one line at `level`; extra arguments are appended separated by spaces (objects as JSON).
   * @param {string} level
   * @param {unknown} msg
   * @param {...unknown} args
   * @throws {RangeError} unknown level.
   */
  log(level, msg, ...args) {
    const text = [msg, ...args].map((part) => (typeof part === 'string' ? part : safeString(part))).join(' ');
    this._sink({ level: normalizeLevel(level), message: text, timestamp: new Date() });
  }

  /** @param {unknown} msg @param {...unknown} args */
  trace(msg, ...args) { this.log('TRACE', msg, ...args); }
  /** @param {unknown} msg @param {...unknown} args */
  debug(msg, ...args) { this.log('DEBUG', msg, ...args); }
  /** @param {unknown} msg @param {...unknown} args */
  info(msg, ...args) { this.log('INFO', msg, ...args); }
  /** @param {unknown} msg @param {...unknown} args */
  warn(msg, ...args) { this.log('WARN', msg, ...args); }
  /** Same as {@link TaskLogger#warn}. @param {unknown} msg @param {...unknown} args */
  warning(msg, ...args) { this.log('WARN', msg, ...args); }
  /** @param {unknown} msg @param {...unknown} args */
  error(msg, ...args) { this.log('ERROR', msg, ...args); }

  /**
   * The captured messages (only when no sink was given), optionally of one level.
   * @param {string} [level]
   * @returns {string[]}
   */
  messages(level) {
    const wanted = level === undefined ? undefined : normalizeLevel(level);
    return this.records.filter((r) => wanted === undefined || r.level === wanted).map((r) => r.message);
  }
}

function safeString(value) {
  if (value instanceof Error) return value.stack ?? String(value);
  if (value !== null && typeof value === 'object') {
    try {
      return JSON.stringify(value);
    } catch {
      return String(value);
    }
  }
  return String(value);
}

/**
 * Thrown by a task to fail its task run with a message of its own: unlike any other error the
 * message is reported as is (no `ErrorName:` prefix) and no stack trace is logged.
 */
export class TaskFailure extends Error {
  name = 'TaskFailure';
  /**
   * @param {string} message why the task failed; becomes the task run's error message.
   * @param {{outputs?: Record<string, any>}} [options] outputs produced before the failure,
   *   kept on the failed task run.
   */
  constructor(message, { outputs } = {}) {
    super(message);
    /** @type {Record<string, any> | undefined} */
    this.outputs = outputs;
  }
}

/** What a task may return instead of a plain object, to end in WARNING. */
export class TaskResult {
  /**
   * @param {{outputs?: Record<string, any> | null, warning?: boolean}} [fields]
   */
  constructor({ outputs = null, warning = false } = {}) {
    this.outputs = outputs;
    this.warning = warning;
  }
}

/**
 * Everything a running task knows about itself. A worker builds one per attempt; tests build
 * one directly (every field has a default, and without a sink the lines stay in
 * `ctx.log.records`).
 *
 * `signal` is aborted when the task should stop: execution killed, timeout, lease lost or worker
 * shutdown (`signal.reason` says which). Pass it to `fetch`, `setTimeout` from
 * `node:timers/promises`, child processes…, or check `ctx.cancelled`.
 */
export class TaskContext {
  /**
   * @param {Partial<{executionId: string, taskRunId: string, taskId: string, taskType: string,
   *   attempt: number, namespace: string, flowId: string, flowRevision: number,
   *   value: string | null, idempotencyKey: string, timeoutSeconds: number | null,
   *   workingDir: string, signal: AbortSignal, log: TaskLogger,
   *   storage: import('./storage.js').TaskStorage | null, kv: import('./storage.js').TaskKV | null}>} [fields]
   */
  constructor(fields = {}) {
    this.executionId = fields.executionId ?? '';
    this.taskRunId = fields.taskRunId ?? '';
    this.taskId = fields.taskId ?? '';
    this.taskType = fields.taskType ?? '';
    /** 1-based attempt number. */
    this.attempt = fields.attempt ?? 1;
    this.namespace = fields.namespace ?? '';
    this.flowId = fields.flowId ?? '';
    this.flowRevision = fields.flowRevision ?? 0;
    /** Loop value (Kestra `taskrun.value`), null outside loops. */
    this.value = fields.value ?? null;
    /** `executionId:taskRunId`, stable across attempts (delivery is at least once). */
    this.idempotencyKey = fields.idempotencyKey ?? '';
    /** The attempt's timeout in seconds, null for none (the worker enforces it). */
    this.timeoutSeconds = fields.timeoutSeconds ?? null;
    /** A directory for this attempt only; created empty and removed after the attempt. */
    this.workingDir = fields.workingDir ?? mkdtempSync(path.join(tmpdir(), 'kestrel-task-'));
    /** @type {AbortSignal} */
    this.signal = fields.signal ?? new AbortController().signal;
    /** @type {TaskLogger} */
    this.log = fields.log ?? new TaskLogger();
    /**
     * Internal storage for this task run: upload output files (resolves their `kestra:///` URI),
     * download files by URI. Null when the context was built without a worker (tests).
     * @type {import('./storage.js').TaskStorage | null}
     */
    this.storage = fields.storage ?? null;
    /**
     * The namespace KV store; null without a worker.
     * @type {import('./storage.js').TaskKV | null}
     */
    this.kv = fields.kv ?? null;
  }

  /** Same as `log`. */
  get logger() {
    return this.log;
  }

  /** True once the task should stop (`signal.aborted`). */
  get cancelled() {
    return this.signal.aborted;
  }
}

/**
 * Batches one attempt's log lines and sends them in order.
 *
 * A periodic flush sends what is pending every `flushInterval` ms, or sooner once `maxBatch`
 * lines wait; each send carries at most `maxBatch` lines and `maxBatchBytes` UTF-8 bytes (a
 * single longer line goes alone). A failed send (the send function threw) keeps its lines, in
 * order, for the next flush. At most `maxPending` lines are held: beyond that the oldest are
 * dropped (counted in `dropped`). Only one send runs at a time, so lines arrive in order.
 *
 * Usage: `start()`, `append()` from the task's logger, `await close()` before reporting the
 * result so that every line precedes it.
 */
export class LogBuffer {
  /**
   * @param {(batch: LogRecord[]) => Promise<void>} send delivers one batch; resolving means done
   *   (sent or dropped for good), rejecting means "try again later".
   * @param {{flushInterval?: number, maxBatch?: number, maxBatchBytes?: number,
   *   maxPending?: number, closeAttempts?: number}} [options] `flushInterval` in milliseconds.
   */
  constructor(send, { flushInterval = 200, maxBatch = 100, maxBatchBytes = 1024 * 1024, maxPending = 10_000, closeAttempts = 3 } = {}) {
    if (maxBatch < 1 || maxPending < maxBatch) throw new RangeError('need 1 <= maxBatch <= maxPending');
    this._send = send;
    this._flushInterval = flushInterval;
    this._maxBatch = maxBatch;
    this._maxBatchBytes = maxBatchBytes;
    this._maxPending = maxPending;
    this._closeAttempts = closeAttempts;
    /** @type {LogRecord[]} */
    this._pending = [];
    this._closed = false;
    this._timer = null;
    /** @type {Promise<boolean> | null} */
    this._sending = null;
    /** Lines dropped because the backlog was full or sends kept failing at close. */
    this.dropped = 0;
  }

  /** Starts the periodic flush. */
  start() {
    if (this._timer === null && !this._closed) {
      this._timer = setInterval(() => void this.flush(), this._flushInterval);
      this._timer.unref?.();
    }
  }

  /** Queues one line. Lines appended after {@link LogBuffer#close} are dropped. @param {LogRecord} record */
  append(record) {
    if (this._closed) {
      this.dropped += 1;
      return;
    }
    this._pending.push(record);
    const overflow = this._pending.length - this._maxPending;
    if (overflow > 0) {
      this._pending.splice(0, overflow);
      this.dropped += overflow;
    }
    if (this._pending.length >= this._maxBatch && this._timer !== null) void this.flush();
  }

  /** @returns {number} lines not sent yet. */
  get pending() {
    return this._pending.length;
  }

  /**
   * Sends every pending line now, in batches (waits for a send already running first).
   * @returns {Promise<boolean>} true when nothing is left pending, false when a send failed.
   */
  async flush() {
    while (this._sending) await this._sending;
    this._sending = this.#flushNow();
    try {
      return await this._sending;
    } finally {
      this._sending = null;
    }
  }

  async #flushNow() {
    for (;;) {
      const batch = this.#takeBatch();
      if (batch.length === 0) return true;
      try {
        await this._send(batch);
      } catch {
        this._pending.unshift(...batch);
        const overflow = this._pending.length - this._maxPending;
        if (overflow > 0) {
          this._pending.splice(0, overflow);
          this.dropped += overflow;
        }
        return false;
      }
    }
  }

  #takeBatch() {
    let size = 0;
    let count = 0;
    while (count < this._pending.length && count < this._maxBatch) {
      const lineSize = Buffer.byteLength(this._pending[count].message, 'utf8');
      if (count > 0 && size + lineSize > this._maxBatchBytes) break;
      size += lineSize;
      count += 1;
    }
    return this._pending.splice(0, count);
  }

  /** Stops the periodic flush and sends what is left (a few attempts, then drops the rest). */
  async close() {
    this._closed = true;
    if (this._timer !== null) {
      clearInterval(this._timer);
      this._timer = null;
    }
    for (let attempt = 0; attempt < Math.max(1, this._closeAttempts); attempt += 1) {
      if (await this.flush()) return;
      if (attempt + 1 < this._closeAttempts) await new Promise((r) => setTimeout(r, this._flushInterval * 2 ** attempt));
    }
    this.dropped += this._pending.length;
    this._pending = [];
  }
}
