/**
 * Internal storage and the KV store as one task run sees them (`ctx.storage`, `ctx.kv`),
 * mirroring the Python SDK's `worker_sdk/storage.py` (`TaskStorage`, `TaskKV`).
 *
 * ```js
 * task('com.acme.Report', async (ctx, props) => {
 *   const local = await ctx.storage.download(props.source, path.join(ctx.workingDir, 'in.csv'));
 *   // ... write report.csv ...
 *   const uri = await ctx.storage.upload(path.join(ctx.workingDir, 'report.csv'));  // kestra:///…/report.csv
 *   await ctx.kv.set('last_report', uri);
 *   return { uri };
 * });
 * ```
 *
 * Files stream in chunks of at most 1 MiB ({@link CHUNK_SIZE}); the control plane records each
 * file's size and sha256, uploads send the expected sha256 and downloads are checked against the
 * recorded one. Every call carries the attempt's task token: a task reaches only its own
 * execution's files and its namespace's, and the KV store of its namespace and its ancestors
 * (anything else is PERMISSION_DENIED).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { RpcError, fromTimestamp } from './client.js';

/** Bytes per upload/download message. */
export const CHUNK_SIZE = 1024 * 1024;

/** Kestra's KV types. */
export const KV_TYPES = Object.freeze(['STRING', 'NUMBER', 'BOOLEAN', 'DATETIME', 'DATE', 'DURATION', 'JSON']);

/** A downloaded file's sha256 differs from the one the control plane recorded. */
export class ChecksumMismatchError extends Error {
  name = 'ChecksumMismatchError';
}

/**
 * One file of internal storage.
 * @typedef {{uri: string, size: number, sha256: string, namespace: string, flowId: string,
 *   executionId: string | null, taskRunId: string | null, createdAt: Date | null}} FileInfo
 */

/**
 * One key of the KV store (`value` is the typed value; `expiresAt` null = never).
 * @typedef {{namespace: string, key: string, type: string, value: any, expiresAt: Date | null,
 *   updatedAt: Date | null}} KVEntry
 */

/** @returns {FileInfo} */
function fileInfo(msg) {
  return {
    uri: msg.uri,
    size: Number(msg.size),
    sha256: msg.sha256,
    namespace: msg.namespace,
    flowId: msg.flow_id,
    executionId: msg.execution_id || null,
    taskRunId: msg.task_run_id || null,
    createdAt: fromTimestamp(msg.created_at),
  };
}

/** @returns {KVEntry} */
function kvEntry(msg) {
  return {
    namespace: msg.namespace,
    key: msg.key,
    type: String(msg.type).replace(/^KV_TYPE_/, '') === 'UNSPECIFIED' ? 'STRING' : String(msg.type).replace(/^KV_TYPE_/, ''),
    value: JSON.parse(msg.value_json),
    expiresAt: fromTimestamp(msg.expires_at),
    updatedAt: fromTimestamp(msg.updated_at),
  };
}

/**
 * @param {string | undefined} kvType
 * @returns {string} the enum name
 * @throws {RangeError} unknown type.
 */
function kvTypeName(kvType) {
  if (kvType === undefined || kvType === null) return 'KV_TYPE_UNSPECIFIED';
  const name = String(kvType).toUpperCase();
  if (!KV_TYPES.includes(name)) throw new RangeError(`unknown KV type ${JSON.stringify(kvType)}; expected one of ${KV_TYPES.join(', ')}`);
  return `KV_TYPE_${name}`;
}

function rpcError(method, error) {
  return new RpcError(method, error.code ?? 2, error.details ?? error.message);
}

async function sha256OfFile(file) {
  const digest = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: CHUNK_SIZE })) digest.update(chunk);
  return digest.digest('hex');
}

/** Internal storage as one task run sees it (`ctx.storage`). */
export class TaskStorage {
  /**
   * @param {import('./client.js').WorkerClient} client the worker's client (its channel).
   * @param {string} taskToken the attempt's token (authorises every call).
   */
  constructor(client, taskToken) {
    this._stub = client.storageStub;
    this._token = taskToken;
    this._timeoutSeconds = client.rpcTimeoutSeconds;
  }

  /**
   * Uploads a local file as an output of this task run.
   * @param {string} file local path
   * @param {string} [name] its name in storage (default: the local base name)
   * @returns {Promise<string>} its `kestra:///…/executions/<exec>/tasks/<task>/<taskrun>/<name>` URI
   * @throws {Error} ENOENT for a missing file; {@link RpcError} when the server refuses.
   */
  async upload(file, name) {
    const info = await stat(file);
    if (!info.isFile()) throw Object.assign(new Error(`no such file: ${file}`), { code: 'ENOENT' });
    const sha256 = await sha256OfFile(file);
    return this.#upload(name ?? path.basename(file), sha256, createReadStream(file, { highWaterMark: CHUNK_SIZE }));
  }

  /**
   * Uploads bytes (or a string, as UTF-8) as a file of this task run.
   * @param {Buffer | Uint8Array | string} data
   * @param {string} name
   * @returns {Promise<string>} its URI
   */
  async uploadBytes(data, name) {
    const buffer = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    const sha256 = createHash('sha256').update(buffer).digest('hex');
    const chunks = [];
    for (let start = 0; start < buffer.length; start += CHUNK_SIZE) chunks.push(buffer.subarray(start, start + CHUNK_SIZE));
    return this.#upload(name, sha256, chunks);
  }

  /**
   * @param {string} name
   * @param {string} sha256
   * @param {AsyncIterable<Buffer> | Iterable<Buffer>} chunks
   */
  async #upload(name, sha256, chunks) {
    /** @type {(value: any) => void} */
    let resolveDone = () => {};
    /** @type {(error: Error) => void} */
    let rejectDone = () => {};
    const done = new Promise((resolve, reject) => { resolveDone = resolve; rejectDone = reject; });
    const call = this._stub.UploadFile((error, response) => (error ? rejectDone(rpcError('UploadFile', error)) : resolveDone(response)));
    const write = async (message) => {
      if (!call.write(message)) await Promise.race([once(call, 'drain'), done]);
    };
    try {
      await write({ header: { task_token: this._token, file_name: name, expected_sha256: sha256 } });
      for await (const chunk of chunks) await write({ chunk });
    } finally {
      call.end();
    }
    const response = await done;
    return response.file.uri;
  }

  /**
   * Downloads a file of this execution or namespace to `dest` (written to a temporary name,
   * renamed once complete and checked against its recorded sha256).
   * @param {string} uri `kestra:///…`
   * @param {string} dest local path (parent folders are created)
   * @returns {Promise<string>} `dest`
   * @throws {RpcError} NOT_FOUND, or PERMISSION_DENIED for another namespace's file.
   * @throws {ChecksumMismatchError} corrupted in transit.
   */
  async download(uri, dest) {
    await mkdir(path.dirname(path.resolve(dest)), { recursive: true });
    const partial = path.join(path.dirname(path.resolve(dest)), `.${path.basename(dest)}.part-${process.pid}`);
    const out = createWriteStream(partial);
    const digest = createHash('sha256');
    let info = null;
    try {
      for await (const message of this.#stream(uri)) {
        if (message.part === 'info') {
          info = message.info;
        } else {
          digest.update(message.chunk);
          if (!out.write(message.chunk)) await once(out, 'drain');
        }
      }
      out.end();
      await once(out, 'finish');
      if (info === null || digest.digest('hex') !== info.sha256) {
        throw new ChecksumMismatchError(`download of ${uri}: content does not match its recorded sha256`);
      }
      await rename(partial, dest);
    } finally {
      out.destroy();
      await rm(partial, { force: true });
    }
    return dest;
  }

  /**
   * A whole file in memory.
   * @param {string} uri
   * @param {number} [limit] most bytes accepted (default 100 MiB)
   * @returns {Promise<Buffer>}
   * @throws {RangeError} larger than `limit`.
   */
  async readBytes(uri, limit = 100 * 1024 * 1024) {
    const parts = [];
    let size = 0;
    for await (const message of this.#stream(uri)) {
      if (message.part !== 'chunk') continue;
      size += message.chunk.length;
      if (size > limit) throw new RangeError(`${uri} is larger than ${limit} bytes`);
      parts.push(message.chunk);
    }
    return Buffer.concat(parts);
  }

  /** Messages of a DownloadFile stream; errors become {@link RpcError}. */
  async *#stream(uri) {
    const call = this._stub.DownloadFile({ uri, task_token: this._token });
    try {
      for await (const message of call) yield message;
    } catch (error) {
      if (error?.code !== undefined) throw rpcError('DownloadFile', error);
      throw error;
    } finally {
      call.cancel();
    }
  }

  /** @param {string} method @param {object} request */
  #unary(method, request) {
    const deadline = new Date(Date.now() + this._timeoutSeconds * 1000);
    return new Promise((resolve, reject) => {
      this._stub[method](request, { deadline }, (error, response) => (error ? reject(rpcError(method, error)) : resolve(response)));
    });
  }

  /** Size, sha256 and owner of a reachable file. @param {string} uri @returns {Promise<FileInfo>} */
  async info(uri) {
    return fileInfo((await this.#unary('GetFileInfo', { uri, task_token: this._token })).file);
  }

  /** The files of this task's execution, ordered by URI. @returns {Promise<FileInfo[]>} */
  async listExecutionFiles() {
    return (await this.#unary('ListFiles', { task_token: this._token })).files.map(fileInfo);
  }

  /** Deletes a reachable file. @param {string} uri @returns {Promise<boolean>} false when there was none. */
  async delete(uri) {
    return (await this.#unary('DeleteFile', { uri, task_token: this._token })).deleted;
  }
}

/**
 * The KV store as one task run sees it (`ctx.kv`): its flow's namespace by default; that
 * namespace's ancestors may be named explicitly, other namespaces are refused.
 */
export class TaskKV {
  /**
   * @param {import('./client.js').WorkerClient} client
   * @param {string} taskToken
   */
  constructor(client, taskToken) {
    this._stub = client.kvStub;
    this._token = taskToken;
    this._timeoutSeconds = client.rpcTimeoutSeconds;
  }

  /** @param {string} method @param {object} request */
  #unary(method, request) {
    const deadline = new Date(Date.now() + this._timeoutSeconds * 1000);
    return new Promise((resolve, reject) => {
      this._stub[method]({ ...request, task_token: this._token }, { deadline }, (error, response) => (error ? reject(rpcError(method, error)) : resolve(response)));
    });
  }

  /**
   * Stores a value.
   * @param {string} key
   * @param {any} value any JSON value
   * @param {{namespace?: string, kvType?: string, overwrite?: boolean, ttlSeconds?: number}} [options]
   *   `kvType` one of {@link KV_TYPES} (default: inferred from the value); `overwrite` default true
   *   (false: ALREADY_EXISTS when the key exists); `ttlSeconds` 0 = no expiry.
   * @returns {Promise<KVEntry>}
   */
  async set(key, value, { namespace = '', kvType = undefined, overwrite = true, ttlSeconds = 0 } = {}) {
    const response = await this.#unary('SetKV', {
      namespace, key, value_json: JSON.stringify(value), type: kvTypeName(kvType), overwrite, ttl_seconds: ttlSeconds,
    });
    return kvEntry(response.entry);
  }

  /**
   * Reads a value.
   * @param {string} key
   * @param {{namespace?: string, inherit?: boolean}} [options] `inherit`: search the parent
   *   namespaces too, nearest first.
   * @returns {Promise<KVEntry | null>} null when missing or expired.
   */
  async get(key, { namespace = '', inherit = false } = {}) {
    try {
      return kvEntry((await this.#unary('GetKV', { namespace, key, inherit })).entry);
    } catch (error) {
      if (error instanceof RpcError && error.codeName === 'NOT_FOUND') return null;
      throw error;
    }
  }

  /** The live keys of a namespace, ordered by key. @param {{namespace?: string, prefix?: string}} [options] @returns {Promise<KVEntry[]>} */
  async list({ namespace = '', prefix = '' } = {}) {
    return (await this.#unary('ListKV', { namespace, prefix })).entries.map(kvEntry);
  }

  /** Deletes a key. @param {string} key @param {{namespace?: string}} [options] @returns {Promise<boolean>} false when there was none. */
  async delete(key, { namespace = '' } = {}) {
    return (await this.#unary('DeleteKV', { namespace, key })).deleted;
  }
}
