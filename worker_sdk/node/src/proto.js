/**
 * Loads the gRPC contract (`protos/kestrel/v1/*.proto`) at run time with @grpc/proto-loader, so
 * the Node SDK always speaks exactly the contract checked in beside it: there is no generated code
 * to regenerate after a proto change.
 *
 * Where the protos are: `KESTREL_PROTO_DIR` when set, else `protos/` inside this package (a
 * packed copy), else the repository's `protos/` two levels up (`worker_sdk/node` in the repo).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Proto files the SDK needs, relative to the proto root. */
export const PROTO_FILES = [
  'kestrel/v1/worker.proto', 'kestrel/v1/log.proto', 'kestrel/v1/common.proto', 'kestrel/v1/storage.proto', 'kestrel/v1/kv.proto',
];

/**
 * Finds the directory holding `kestrel/v1/worker.proto`.
 * @returns {string}
 * @throws {Error} when no candidate directory holds the contract.
 */
export function protoRoot() {
  const candidates = [
    process.env.KESTREL_PROTO_DIR,
    path.resolve(HERE, '..', 'protos'),
    path.resolve(HERE, '..', '..', '..', 'protos'),
  ].filter(Boolean);
  for (const dir of candidates) {
    if (existsSync(path.join(dir, 'kestrel', 'v1', 'worker.proto'))) return dir;
  }
  throw new Error(`Kestrel protos not found (looked in ${candidates.join(', ')}); set KESTREL_PROTO_DIR`);
}

let cached = null;

/**
 * Loads the contract once.
 * Options: field names stay snake_case as in the .proto files (so the wire names in the docs are
 * the names in code), enums are decoded as their names, int64 as strings, and unset fields are
 * filled with defaults (`defaults: true`), as protobuf does in other languages.
 * @returns {any} the grpc package object (`.kestrel.v1.WorkerService`, …).
 */
export function loadContract() {
  if (cached) return cached;
  const root = protoRoot();
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs: [root],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  cached = grpc.loadPackageDefinition(definition);
  return cached;
}
