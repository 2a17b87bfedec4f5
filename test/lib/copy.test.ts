import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CopyPathError, packPath, readFileBelow, unpackTo } from '../../lib/copy.js';
import { TarStreamReader, tarHeader, tarPadding, tarTrailer, type TarHeader } from '../../lib/tar.js';

async function pack(root: string, path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  await packPath(root, path, { write: (c) => void parts.push(Buffer.from(c)) });
  return Buffer.concat(parts);
}

function entries(tar: Buffer): { h: TarHeader; data: string }[] {
  const out: { h: TarHeader; data: string }[] = [];
  const r = new TarStreamReader({
    entry: (h) => out.push({ h, data: '' }),
    data: (c) => { (out[out.length - 1] as { data: string }).data += c.toString(); },
    entryEnd: () => undefined,
  });
  // Byte by byte: the reader must not depend on how the stream is cut.
  for (let i = 0; i < tar.length; i += 7) r.push(tar.subarray(i, i + 7));
  r.end();
  return out;
}

function unpack(root: string, dest: string, tar: Buffer): { entries: number; bytes: number } {
  const u = unpackTo(root, dest);
  try {
    u.write(tar);
    return u.finish();
  } catch (err) {
    u.abort();
    throw err;
  }
}

describe('lib/copy and lib/tar', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-test-copy-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('packs a directory tree with modes, symlinks as symlinks and long names through pax', async () => {
    const src = join(dir, 'src');
    const long = 'n'.repeat(150);
    mkdirSync(join(src, 'tree/sub'), { recursive: true });
    writeFileSync(join(src, 'tree/sub/file'), 'hello\n');
    chmodSync(join(src, 'tree/sub/file'), 0o754);
    writeFileSync(join(src, `tree/${long}`), 'long\n');
    symlinkSync('/etc/passwd', join(src, 'tree/link'));
    const tar = await pack(src, '/tree');
    const got = entries(tar);
    const byName = new Map(got.map((e) => [e.h.name, e]));
    assert.equal(byName.get('tree')?.h.kind, 'dir');
    assert.equal(byName.get('tree/sub/file')?.data, 'hello\n');
    assert.equal(byName.get('tree/sub/file')?.h.mode, 0o754);
    assert.equal(byName.get(`tree/${long}`)?.data, 'long\n');
    assert.equal(byName.get('tree/link')?.h.kind, 'symlink');
    assert.equal(byName.get('tree/link')?.h.linkname, '/etc/passwd');
  });

  it('unpacks into an existing directory under the top name, or to a new name, as docker cp does', async () => {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'tree/sub'), { recursive: true });
    writeFileSync(join(src, 'tree/sub/file'), 'hello\n');
    chmodSync(join(src, 'tree/sub'), 0o700);
    writeFileSync(join(src, 'single'), 'one\n');
    chmodSync(join(src, 'single'), 0o600);
    const dst = join(dir, 'dst');
    mkdirSync(join(dst, 'existing'), { recursive: true });
    assert.equal(unpack(dst, '/existing', await pack(src, 'tree')).entries, 3);
    assert.equal(readFileSync(join(dst, 'existing/tree/sub/file'), 'utf8'), 'hello\n');
    assert.equal(statSync(join(dst, 'existing/tree/sub')).mode & 0o777, 0o700);
    unpack(dst, 'renamed', await pack(src, 'tree'));
    assert.equal(readFileSync(join(dst, 'renamed/sub/file'), 'utf8'), 'hello\n');
    unpack(dst, 'copy.txt', await pack(src, 'single'));
    assert.equal(readFileSync(join(dst, 'copy.txt'), 'utf8'), 'one\n');
    assert.equal(statSync(join(dst, 'copy.txt')).mode & 0o777, 0o600);
    // An existing file is replaced; a directory onto a file is refused.
    writeFileSync(join(src, 'single'), 'two\n');
    unpack(dst, 'copy.txt', await pack(src, 'single'));
    assert.equal(readFileSync(join(dst, 'copy.txt'), 'utf8'), 'two\n');
    assert.throws(() => unpack(dst, 'copy.txt', Buffer.alloc(0)), /empty/);
    await assert.rejects(async () => unpack(dst, 'copy.txt', await pack(src, 'tree')), /cannot copy a directory onto the file/);
  });

  it('never follows a symlink of the root, reading or writing', async () => {
    const root = join(dir, 'root');
    const outside = join(dir, 'outside');
    mkdirSync(join(root, 'etc'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'host secret\n');
    symlinkSync(outside, join(root, 'escape'));
    symlinkSync('../../outside', join(root, 'etc/rel'));
    symlinkSync(join(outside, 'secret'), join(root, 'etc/passwd'));
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'f'), 'x');
    const tar = await pack(src, 'f');

    await assert.rejects(pack(root, '/escape/secret'), (e: unknown) => e instanceof CopyPathError && /"\/escape" is a symbolic link/.test(e.message));
    await assert.rejects(pack(root, '/etc/rel/secret'), /symbolic link/);
    assert.throws(() => unpack(root, '/escape', tar), /symbolic link/);
    assert.throws(() => unpack(root, '/escape/f', tar), /symbolic link/);
    assert.throws(() => unpack(root, '/etc/rel/f', tar), /symbolic link/);
    assert.throws(() => unpack(root, '/../outside', tar), /contains "\.\."/);
    assert.deepEqual(readdirSync(outside), ['secret']);
    // A symlink as the destination name is refused too (not written through, not replaced).
    assert.throws(() => unpack(root, '/etc/passwd', tar), /it is a symbolic link/);
    assert.ok(lstatSync(join(root, 'etc/passwd')).isSymbolicLink());
    assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), 'host secret\n');
    await assert.rejects(readFileBelow(root, 'escape/secret'), /symbolic link/);
  });

  it('refuses archives that climb out, write through their own symlinks or hold other entry types', () => {
    const root = join(dir, 'root');
    mkdirSync(join(root, 'dest'), { recursive: true });
    const file = (name: string, body = 'x'): Buffer => Buffer.concat([
      tarHeader({ name, kind: 'file', typeFlag: '0', mode: 0o644, size: body.length, mtime: 0, linkname: '' }), Buffer.from(body), tarPadding(body.length),
    ]);
    const link = (name: string, target: string): Buffer => tarHeader({ name, kind: 'symlink', typeFlag: '2', mode: 0o777, size: 0, mtime: 0, linkname: target });
    assert.throws(() => unpack(root, '/dest', Buffer.concat([file('top/../../evil'), tarTrailer()])), /contains "\.\."/);
    assert.throws(() => unpack(root, '/dest', Buffer.concat([link('top', '/'), file('top/etc/evil'), tarTrailer()])), /symbolic link/);
    assert.throws(() => unpack(root, '/dest', Buffer.concat([file('a'), file('b'), tarTrailer()])), /below the top entry "a"/);
    const fifo = Buffer.from(tarHeader({ name: 'p', kind: 'file', typeFlag: '0', mode: 0o644, size: 0, mtime: 0, linkname: '' }));
    fifo.write('6', 156);
    // Fix the checksum after changing the type flag.
    fifo.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += fifo[i] ?? 0;
    fifo.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148);
    assert.throws(() => unpack(root, '/dest', Buffer.concat([fifo, tarTrailer()])), /unsupported entry type "6"/);
    assert.throws(() => unpack(root, '/dest', Buffer.from('not a tar archive'.padEnd(1024, '!'))), /malformed archive/);
    assert.ok(!existsSync(join(root, 'evil')) && !existsSync(join(root, 'etc')));
    assert.ok(lstatSync(join(root, 'dest/top')).isSymbolicLink());
    assert.equal(readlinkSync(join(root, 'dest/top')), '/');
  });
});
