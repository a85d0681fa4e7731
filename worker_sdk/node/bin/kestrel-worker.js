#!/usr/bin/env node
/**
 * `kestrel-worker`: runs one Node.js worker process.
 *
 *     kestrel-worker --server 127.0.0.1:6570 --concurrency 4 --module ./my-tasks.js
 *
 * Each `--module` is imported first so that its `task(...)` calls register (import `task` from
 * this package). Exit code 0 after a clean stop (SIGTERM/SIGINT), 1 when the worker cannot run,
 * 2 for bad arguments.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_SERVER, DEFAULT_SHUTDOWN_GRACE_SECONDS, WorkerError, connectionFromEnv, runWorker } from '../src/index.js';

const USAGE = `usage: kestrel-worker [--server HOST:PORT] [--concurrency N] [--worker-group G]
                      [--label KEY=VALUE]... [--module PATH]... [--shutdown-grace SECONDS]
                      [--token T] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM]

  --server          control plane HOST:PORT (env KESTREL_SERVER, default ${DEFAULT_SERVER})
  --concurrency     task runs at once (default 4)
  --worker-group    worker group key (default: the default group); --group is the same
  --label           worker label KEY=VALUE (repeatable)
  --module          JavaScript module whose task(...) calls register task types (repeatable)
  --shutdown-grace  on SIGTERM, seconds running task runs may still finish (default ${DEFAULT_SHUTDOWN_GRACE_SECONDS})
  --token           API token of the worker (env KESTREL_TOKEN)
  --tls-ca          CA of the server certificate, turns TLS on (env KESTREL_TLS_CA)
  --tls-cert        worker certificate for mutual TLS (env KESTREL_TLS_CERT)
  --tls-key         key of --tls-cert (env KESTREL_TLS_KEY)`;

function fail(message) {
  process.stderr.write(`kestrel-worker: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      server: { type: 'string', default: process.env.KESTREL_SERVER ?? DEFAULT_SERVER },
      concurrency: { type: 'string', default: '4' },
      'worker-group': { type: 'string', default: '' },
      group: { type: 'string', default: '' }, // the Python worker's name for --worker-group
      label: { type: 'string', multiple: true, default: [] },
      module: { type: 'string', multiple: true, default: [] },
      'shutdown-grace': { type: 'string', default: String(DEFAULT_SHUTDOWN_GRACE_SECONDS) },
      token: { type: 'string' },
      'tls-ca': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (exc) {
  fail(exc.message);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const concurrency = Number(values.concurrency);
if (!Number.isInteger(concurrency) || concurrency < 1) fail(`--concurrency: expected an integer >= 1, got ${JSON.stringify(values.concurrency)}`);
const grace = Number(values['shutdown-grace']);
if (!Number.isFinite(grace) || grace < 0) fail(`--shutdown-grace: expected seconds >= 0, got ${JSON.stringify(values['shutdown-grace'])}`);
/** @type {Record<string, string>} */
const labels = {};
for (const text of values.label) {
  const at = text.indexOf('=');
  if (at <= 0) fail(`--label: expected KEY=VALUE, got ${JSON.stringify(text)}`);
  labels[text.slice(0, at)] = text.slice(at + 1);
}

try {
  await runWorker({
    server: values.server, concurrency, workerGroup: values['worker-group'] || values.group, labels, modules: values.module, shutdownGraceSeconds: grace,
    connection: connectionFromEnv(process.env, {
      token: values.token, tlsCa: values['tls-ca'], tlsCert: values['tls-cert'], tlsKey: values['tls-key'],
    }),
  });
  process.exit(0);
} catch (exc) {
  process.stderr.write(`kestrel-worker: ${exc instanceof WorkerError ? exc.message : exc?.stack ?? exc}\n`);
  process.exit(1);
}
