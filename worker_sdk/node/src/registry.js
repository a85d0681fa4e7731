/**
 * Task registry: which JavaScript function runs which Kestra task type (mirrors the Python SDK's
 * `worker_sdk/registry.py`).
 *
 * ```js
 * import { task } from '@kestrel/worker-sdk';
 * task('my.company.Hello', async (ctx, props) => {
 *   ctx.log.info(`hello ${props.name}`);
 *   return { greeting: `hello ${props.name}` };
 * });
 * ```
 *
 * A task function is `fn(ctx, props)` returning (or resolving to) the outputs: a plain object,
 * a {@link TaskResult} or `undefined`/`null`. The Node SDK ships no built-in task types: the
 * core ones (Log, Return, shell…) run on Python workers, and the control plane routes each task
 * run by its type to a worker that registered it.
 *
 * @module
 */

/**
 * Legacy Kestra type name → canonical name (the same table as the Python SDK; only matters when
 * a Node worker registers one of the core types itself).
 * @type {Readonly<Record<string, string>>}
 */
export const LEGACY_ALIASES = Object.freeze({
  'io.kestra.core.tasks.log.Log': 'io.kestra.plugin.core.log.Log',
  'io.kestra.core.tasks.debugs.Return': 'io.kestra.plugin.core.debug.Return',
  'io.kestra.core.tasks.debugs.Echo': 'io.kestra.plugin.core.debug.Echo',
  'io.kestra.core.tasks.executions.Fail': 'io.kestra.plugin.core.execution.Fail',
  'io.kestra.core.tasks.scripts.Bash': 'io.kestra.plugin.scripts.shell.Commands',
});

/**
 * Returns the canonical name of a task type (legacy aliases resolved, whitespace trimmed).
 * @param {string} typeName
 * @returns {string}
 */
export function canonicalType(typeName) {
  const name = String(typeName).trim();
  return LEGACY_ALIASES[name] ?? name;
}

/** A task type (after alias resolution) is already registered. */
export class DuplicateTaskTypeError extends Error {
  name = 'DuplicateTaskTypeError';
}

/** No function is registered for a task type. */
export class UnknownTaskTypeError extends Error {
  name = 'UnknownTaskTypeError';
}

/**
 * @typedef {import('./context.js').TaskContext} TaskContext
 * @typedef {Record<string, any> | import('./context.js').TaskResult | null | undefined} TaskOutputs
 * @typedef {(ctx: TaskContext, props: Record<string, any>) => TaskOutputs | Promise<TaskOutputs>} TaskFunction
 * @typedef {{type: string, fn: TaskFunction}} TaskDefinition
 */

/** Maps task type names to task functions. */
export class TaskRegistry {
  /** @type {Map<string, TaskDefinition>} */
  #tasks = new Map();

  /**
   * Registers `fn` for `typeName` (a legacy alias registers the canonical name).
   * @param {string} typeName Kestra type name, e.g. `my.company.Hello`.
   * @param {TaskFunction} fn `fn(ctx, props)`, sync or async.
   * @param {{replace?: boolean}} [options] `replace`: allow replacing an existing registration.
   * @returns {TaskDefinition}
   * @throws {TypeError} empty name or `fn` not a function.
   * @throws {DuplicateTaskTypeError} already registered and `replace` is false.
   */
  register(typeName, fn, { replace = false } = {}) {
    const name = canonicalType(typeName ?? '');
    if (!name) throw new TypeError('task type name must not be empty');
    if (typeof fn !== 'function') throw new TypeError(`task ${JSON.stringify(name)}: ${String(fn)} is not a function`);
    const existing = this.#tasks.get(name);
    if (existing && !replace && existing.fn !== fn) {
      throw new DuplicateTaskTypeError(
        `task type ${JSON.stringify(name)} is already registered to ${existing.fn.name || 'an anonymous function'}` +
          ' (pass {replace: true} to override it)',
      );
    }
    const definition = Object.freeze({ type: name, fn });
    this.#tasks.set(name, definition);
    return definition;
  }

  /**
   * Shorthand of {@link TaskRegistry#register} that returns the function unchanged.
   * @template {TaskFunction} F
   * @param {string} typeName
   * @param {F} fn
   * @param {{replace?: boolean}} [options]
   * @returns {F}
   */
  task(typeName, fn, options) {
    this.register(typeName, fn, options);
    return fn;
  }

  /**
   * Returns the definition for a type name or one of its aliases.
   * @param {string} typeName
   * @returns {TaskDefinition}
   * @throws {UnknownTaskTypeError}
   */
  get(typeName) {
    const definition = this.#tasks.get(canonicalType(typeName));
    if (!definition) throw new UnknownTaskTypeError(`no task registered for type ${JSON.stringify(typeName)}`);
    return definition;
  }

  /** @returns {string[]} the canonical names of every registered type, sorted (what the worker advertises). */
  taskTypes() {
    return [...this.#tasks.keys()].sort();
  }

  /** Removes a type if present (mostly for tests). @param {string} typeName */
  unregister(typeName) {
    this.#tasks.delete(canonicalType(typeName));
  }

  /** @param {string} typeName @returns {boolean} */
  has(typeName) {
    return this.#tasks.has(canonicalType(typeName));
  }

  /** @returns {number} */
  get size() {
    return this.#tasks.size;
  }

  [Symbol.iterator]() {
    return [...this.#tasks.values()][Symbol.iterator]();
  }
}

/** The registry {@link task} writes to and `Worker` uses unless given another. */
export const defaultRegistry = new TaskRegistry();

/**
 * Registers `fn` as the runner of a task type in `registry` (default {@link defaultRegistry}).
 * @template {TaskFunction} F
 * @param {string} typeName Kestra type name.
 * @param {F} fn The task function.
 * @param {{registry?: TaskRegistry, replace?: boolean}} [options]
 * @returns {F} `fn`, unchanged.
 * @throws {DuplicateTaskTypeError}
 */
export function task(typeName, fn, { registry = defaultRegistry, replace = false } = {}) {
  return registry.task(typeName, fn, { replace });
}
