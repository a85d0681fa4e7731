import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ChecksumMismatchError, RpcError, TaskKV, TaskStorage, WorkerClient } from '../src/index.js';
import { startFakeServer } from '../testing/fake-server.js';

async function withStorage(script, body) {
  const server = await startFakeServer(script);
  const client = new WorkerClient(server.address);
  try {
    await body({ server, storage: new TaskStorage(client, 'tok-1'), kv: new TaskKV(client, 'tok-1') });
  } finally {
    client.close();
    server.kill();
  }
}

test('uploads stream a header with the token and sha256, then chunks of at most 1 MiB; downloads are checked and complete', async () => {
  await withStorage({}, async ({ server, storage }) => {
    const data = Buffer.alloc(2.5 * 1024 * 1024, 'é');
    const dir = mkdtempSync(path.join(tmpdir(), 'kestrel-storage-test-'));
    const source = path.join(dir, 'in.bin');
    writeFileSync(source, data);
    const uri = await storage.upload(source);
    assert.equal(uri, 'kestra:///ns/f/executions/ex-1/tasks/t/tr/in.bin');
    const upload = server.of('upload')[0];
    assert.equal(upload.header.task_token, 'tok-1');
    assert.equal(upload.header.expected_sha256, createHash('sha256').update(data).digest('hex'));
    assert.ok(upload.chunkSizes.every((n) => n <= 1024 * 1024) && upload.chunkSizes.length >= 3, String(upload.chunkSizes));
    const dest = path.join(dir, 'sub', 'out.bin');
    assert.equal(await storage.download(uri, dest), dest);
    assert.ok(readFileSync(dest).equals(data));
    assert.equal(server.of('download')[0].task_token, 'tok-1');
    const named = await storage.uploadBytes('héllo', 'greeting.txt');
    assert.equal((await storage.readBytes(named)).toString('utf8'), 'héllo');
    await assert.rejects(storage.readBytes(uri, 1024), RangeError);
  });
});

test('a download whose content does not match its recorded sha256 fails and leaves no file behind', async () => {
  await withStorage({ sha256: '0'.repeat(64) }, async ({ storage }) => {
    const uri = await storage.uploadBytes('data', 'x.txt');
    const dir = mkdtempSync(path.join(tmpdir(), 'kestrel-storage-test-'));
    await assert.rejects(storage.download(uri, path.join(dir, 'x.txt')), ChecksumMismatchError);
    assert.deepEqual(readdirSync(dir), []);
  });
});

test('a missing file is an RpcError NOT_FOUND; a missing local file is refused before any call', async () => {
  await withStorage({}, async ({ server, storage }) => {
    await assert.rejects(storage.readBytes('kestra:///nope'), (err) => err instanceof RpcError && err.codeName === 'NOT_FOUND');
    await assert.rejects(storage.upload('/nonexistent/file.txt'), /ENOENT|no such file/);
    assert.equal(server.of('upload').length, 0);
    assert.equal(existsSync('/nonexistent/file.txt'), false);
  });
});

test('KV: set sends JSON and the token, get returns the typed value, a missing key is null, bad types are refused', async () => {
  await withStorage({}, async ({ server, kv }) => {
    const entry = await kv.set('k', { uri: 'kestra:///x', n: 1 }, { ttlSeconds: 60 });
    assert.deepEqual(entry.value, { uri: 'kestra:///x', n: 1 });
    const sent = server.of('setKV')[0];
    assert.equal(sent.task_token, 'tok-1');
    assert.equal(sent.type, 'KV_TYPE_UNSPECIFIED');
    assert.equal(sent.overwrite, true);
    assert.equal(sent.ttl_seconds, 60);
    assert.deepEqual((await kv.get('k')).value, { uri: 'kestra:///x', n: 1 });
    assert.equal(await kv.get('missing'), null);
    await kv.set('s', 'text', { kvType: 'string' });
    assert.equal(server.of('setKV')[1].type, 'KV_TYPE_STRING');
    await assert.rejects(kv.set('x', 1, { kvType: 'FLOATY' }), /unknown KV type "FLOATY"/);
    assert.equal(await kv.delete('k'), true);
    assert.equal(await kv.delete('k'), false);
  });
});
