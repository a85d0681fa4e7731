import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogBuffer, TaskContext, TaskLogger, normalizeLevel } from '../src/index.js';

const line = (message) => ({ level: 'INFO', message, timestamp: new Date() });

test('levels are normalised the way the Python SDK does', () => {
  assert.equal(normalizeLevel('warning'), 'WARN');
  assert.equal(normalizeLevel(' fatal '), 'ERROR');
  assert.equal(normalizeLevel('trace'), 'TRACE');
  assert.throws(() => normalizeLevel('LOUD'), /expected one of TRACE, DEBUG, INFO, WARN, ERROR/);
});

test('TaskLogger keeps records without a sink and joins extra arguments', () => {
  const log = new TaskLogger();
  log.info('rows', 3, { a: 1 });
  log.warning('careful');
  log.error(new Error('bad'));
  assert.deepEqual(log.messages('INFO'), ['rows 3 {"a":1}']);
  assert.deepEqual(log.messages('WARN'), ['careful']);
  assert.match(log.messages('ERROR')[0], /^Error: bad/);
  assert.ok(log.records[0].timestamp instanceof Date);
});

test('TaskContext defaults, cancelled follows the signal, logger is log', () => {
  const controller = new AbortController();
  const ctx = new TaskContext({ taskId: 't', attempt: 2, signal: controller.signal });
  assert.equal(ctx.attempt, 2);
  assert.equal(ctx.value, null);
  assert.equal(ctx.logger, ctx.log);
  assert.ok(ctx.workingDir.length > 0);
  assert.equal(ctx.cancelled, false);
  controller.abort('cancelled');
  assert.equal(ctx.cancelled, true);
});

test('LogBuffer sends in order, in batches of at most maxBatch lines', async () => {
  const sent = [];
  const buffer = new LogBuffer(async (batch) => { sent.push(batch.map((r) => r.message)); }, { maxBatch: 3, flushInterval: 1000 });
  buffer.start();
  for (let i = 0; i < 7; i += 1) buffer.append(line(`m${i}`));
  await buffer.close();
  assert.ok(sent.every((batch) => batch.length <= 3));
  assert.deepEqual(sent.flat(), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  buffer.append(line('late'));
  assert.equal(buffer.dropped, 1);
});

test('LogBuffer splits batches by UTF-8 size, a long line goes alone', async () => {
  const sent = [];
  const buffer = new LogBuffer(async (batch) => { sent.push(batch.map((r) => r.message)); }, { maxBatchBytes: 10 });
  buffer.append(line('ééé')); // 6 bytes
  buffer.append(line('éé')); // 4 bytes -> 10, still fits
  buffer.append(line('x'.repeat(50)));
  buffer.append(line('y'));
  await buffer.close();
  assert.deepEqual(sent, [['ééé', 'éé'], ['x'.repeat(50)], ['y']]);
});

test('LogBuffer keeps a failed batch, in order, for the next flush', async () => {
  const sent = [];
  let failures = 1;
  const buffer = new LogBuffer(async (batch) => {
    if (failures > 0) {
      failures -= 1;
      throw new Error('UNAVAILABLE');
    }
    sent.push(...batch.map((r) => r.message));
  }, { maxBatch: 2 });
  ['a', 'b', 'c'].forEach((m) => buffer.append(line(m)));
  assert.equal(await buffer.flush(), false);
  assert.equal(buffer.pending, 3);
  buffer.append(line('d'));
  assert.equal(await buffer.flush(), true);
  assert.deepEqual(sent, ['a', 'b', 'c', 'd']);
});

test('LogBuffer drops the oldest lines beyond maxPending, and what close cannot send', async () => {
  const buffer = new LogBuffer(async () => { throw new Error('down'); }, { maxBatch: 2, maxPending: 4, closeAttempts: 2, flushInterval: 1 });
  for (let i = 0; i < 6; i += 1) buffer.append(line(`m${i}`));
  assert.equal(buffer.dropped, 2);
  assert.equal(buffer.pending, 4);
  await buffer.close();
  assert.equal(buffer.dropped, 6);
  assert.equal(buffer.pending, 0);
});

test('LogBuffer refuses maxBatch > maxPending', () => {
  assert.throws(() => new LogBuffer(async () => {}, { maxBatch: 10, maxPending: 5 }), RangeError);
});
