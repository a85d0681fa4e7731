import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DuplicateTaskTypeError, TaskRegistry, UnknownTaskTypeError, canonicalType, defaultRegistry, task } from '../src/index.js';

test('register, look up and list task types (sorted, canonical)', () => {
  const registry = new TaskRegistry();
  const b = async () => ({});
  const a = () => ({});
  registry.register('com.acme.B', b);
  registry.register('  com.acme.A ', a);
  assert.deepEqual(registry.taskTypes(), ['com.acme.A', 'com.acme.B']);
  assert.equal(registry.get('com.acme.B').fn, b);
  assert.equal(registry.size, 2);
  assert.ok(registry.has('com.acme.A'));
});

test('legacy aliases resolve to the canonical name', () => {
  assert.equal(canonicalType('io.kestra.core.tasks.log.Log'), 'io.kestra.plugin.core.log.Log');
  const registry = new TaskRegistry();
  const fn = () => ({});
  registry.register('io.kestra.core.tasks.debugs.Return', fn);
  assert.deepEqual(registry.taskTypes(), ['io.kestra.plugin.core.debug.Return']);
  assert.equal(registry.get('io.kestra.core.tasks.debugs.Return').fn, fn);
});

test('a second function for the same type is refused unless replace is set', () => {
  const registry = new TaskRegistry();
  const first = () => ({});
  registry.register('x.Y', first);
  registry.register('x.Y', first); // the same function again is fine (module imported twice)
  assert.throws(() => registry.register('x.Y', () => ({})), DuplicateTaskTypeError);
  const second = () => ({ second: true });
  registry.register('x.Y', second, { replace: true });
  assert.equal(registry.get('x.Y').fn, second);
});

test('bad registrations and unknown types raise clear errors', () => {
  const registry = new TaskRegistry();
  assert.throws(() => registry.register('', () => ({})), /must not be empty/);
  assert.throws(() => registry.register('x.Y', 'nope'), /is not a function/);
  assert.throws(() => registry.get('x.Missing'), (err) => err instanceof UnknownTaskTypeError && /x\.Missing/.test(err.message));
  registry.register('x.Z', () => ({}));
  registry.unregister('x.Z');
  assert.equal(registry.has('x.Z'), false);
});

test('task() registers into the default registry and returns the function', () => {
  const fn = async () => ({ ok: true });
  assert.equal(task('test.registry.Default', fn), fn);
  assert.equal(defaultRegistry.get('test.registry.Default').fn, fn);
  defaultRegistry.unregister('test.registry.Default');
  const own = new TaskRegistry();
  task('test.registry.Own', fn, { registry: own });
  assert.deepEqual(own.taskTypes(), ['test.registry.Own']);
});
