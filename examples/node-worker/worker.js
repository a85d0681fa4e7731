#!/usr/bin/env node
/**
 * An example Kestrel worker in Node.js: runs the custom task type `com.acme.node.WordCount`.
 *
 *   npm ci --prefix worker_sdk/node                       # once: the SDK's dependencies
 *   node examples/node-worker/worker.js --server 127.0.0.1:6570
 *
 * In your own project, `npm install <path to kestrel>/worker_sdk/node` and import from
 * '@kestrel/worker-sdk' instead of the relative path below.
 */
import { parseArgs } from 'node:util';
import { TaskFailure, TaskResult, Worker, task } from '../../worker_sdk/node/src/index.js';

/**
 * Counts the words of `text` (a rendered property: `{{ inputs.text }}` arrives as plain text).
 * Outputs `{words, distinct, top: [{word, count}]}`; ends in WARNING when the text is longer
 * than `warnAbove` words, fails with a message when it is empty.
 */
task('com.acme.node.WordCount', async (ctx, props) => {
  const text = String(props.text ?? '');
  const top = Number(props.top ?? 3);
  const words = text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
  if (words.length === 0) throw new TaskFailure(`task ${ctx.taskId}: property 'text' has no words`);
  ctx.log.info(`counting ${words.length} words for execution ${ctx.executionId} (attempt ${ctx.attempt})`);
  const counts = new Map();
  for (const word of words) {
    if (ctx.cancelled) throw new Error('cancelled'); // the execution was killed
    counts.set(word, (counts.get(word) ?? 0) + 1);
  }
  const ranked = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, top);
  for (const [word, count] of ranked) ctx.log.debug(`${word}: ${count}`);
  const outputs = { words: words.length, distinct: counts.size, top: ranked.map(([word, count]) => ({ word, count })) };
  const warnAbove = props.warnAbove === undefined ? Infinity : Number(props.warnAbove);
  return new TaskResult({ outputs, warning: words.length > warnAbove });
});

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: process.env.KESTREL_SERVER ?? '127.0.0.1:6570' },
    concurrency: { type: 'string', default: '4' },
  },
});

// Runs until Ctrl-C / SIGTERM: running task runs get 5 s to finish, the rest are handed back.
await new Worker(values.server, { concurrency: Number(values.concurrency) }).run();
