import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalContentStore, sha256Digest } from '../../../agent/content/index.js';

describe('LocalContentStore', () => {
  let root: string;
  let store: LocalContentStore;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'berth-content-'));
    store = new LocalContentStore(root);
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  const blob = Buffer.from('hello blob\n');
  const desc = { mediaType: 'application/octet-stream', digest: sha256Digest(blob), size: blob.length };

  it('stores a blob under content/sha256/<hex> after the digest and size match', async () => {
    assert.equal(await store.ingest(desc, async (w) => {
      w.write(blob.subarray(0, 3));
      w.write(blob.subarray(3));
    }), 'written');
    assert.equal(readFileSync(join(root, 'content', 'sha256', desc.digest.slice(7)), 'utf8'), 'hello blob\n');
    assert.deepEqual(await store.info(desc.digest), { digest: desc.digest, size: blob.length });
    assert.equal(await store.ingest(desc, async () => assert.fail('must not be called')), 'exists');
    assert.deepEqual(await store.list(), [{ digest: desc.digest, size: blob.length }]);
    assert.equal(await store.delete(desc.digest), blob.length);
    assert.equal(await store.info(desc.digest), undefined);
  });

  it('refuses bytes that do not hash to the digest and leaves no ingest file', async () => {
    await assert.rejects(store.ingest(desc, async (w) => w.write(Buffer.from('hello BLOB\n'))), /blob digest mismatch: expected "sha256:[a-f0-9]{64}", got "sha256:[a-f0-9]{64}"/);
    assert.deepEqual(readdirSync(join(root, 'content', 'ingest')), []);
    assert.equal(await store.info(desc.digest), undefined);
  });

  it('refuses too many and too few bytes', async () => {
    await assert.rejects(store.ingest(desc, async (w) => w.write(Buffer.concat([blob, Buffer.from('x')]))), /larger than the 11 bytes its descriptor declares/);
    await assert.rejects(store.ingest(desc, async (w) => w.write(blob.subarray(0, 5))), /truncated: got 5 bytes, expected 11/);
    assert.deepEqual(readdirSync(join(root, 'content', 'ingest')), []);
  });

  it('runs one producer when two ingests of the same blob overlap', async () => {
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const produce = async (w: { write(b: Buffer): void }): Promise<void> => {
      calls++;
      await gate;
      w.write(blob);
    };
    const a = store.ingest(desc, produce);
    const b = store.ingest(desc, produce);
    await new Promise((r) => setTimeout(r, 20));
    release();
    assert.deepEqual((await Promise.all([a, b])).sort(), ['shared', 'written']);
    assert.equal(calls, 1);
  });

  it('refuses an invalid digest with the field named', async () => {
    await assert.rejects(store.info('md5:abc'), /invalid digest "md5:abc": expected sha256: followed by 64 lowercase hex characters/);
    await assert.rejects(store.readBytes(sha256Digest(Buffer.from('nope'))), /blob "sha256:[a-f0-9]{64}" not found/);
  });
});
