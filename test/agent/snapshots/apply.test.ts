import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, type Stats, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayerApplier, LayerWriterPool, TarReader, type TarEntry } from '../../../agent/snapshots/index.js';
import { HelperNodeMaker } from '../../../agent/sys/fsops.js';
import { fsopsHelperPath, makeTar, sha256, type TarItem } from '../images/fixtures.js';

function xattr(path: string, name: string): string | undefined {
  try {
    return execFileSync('python3', ['-c', 'import os,sys;sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())', path, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}

describe('TarReader', () => {
  function read(tar: Buffer, chunk = 7): { entries: TarEntry[]; data: Map<string, Buffer> } {
    const entries: TarEntry[] = [];
    const data = new Map<string, Buffer>();
    let cur = '';
    const r = new TarReader({
      entry: (e) => {
        entries.push(e);
        cur = e.name;
        data.set(cur, Buffer.alloc(0));
      },
      data: (c) => data.set(cur, Buffer.concat([data.get(cur)!, c])),
      entryEnd: () => undefined,
    });
    for (let i = 0; i < tar.length; i += chunk) r.push(tar.subarray(i, i + chunk));
    r.end();
    return { entries, data };
  }

  it('reads pax long names, link paths, xattrs and mtimes, and GNU long names, in arbitrary chunks', () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    const tar = makeTar([
      { name: 'x', pax: { path: long, mtime: '1700000000.5', 'SCHILY.xattr.user.k': Buffer.from([0, 1, 2, 255]) }, data: 'pax' },
      { name: 'l', type: '2', pax: { linkpath: `/${'t'.repeat(200)}` } },
      { name: `gnu/${'g'.repeat(200)}`, gnuLongName: true, data: 'gnu' },
      { name: 'dev', type: '3', devmajor: 1, devminor: 3, mode: 0o666 },
    ]);
    const { entries, data } = read(tar);
    assert.equal(entries[0]!.name, long);
    assert.equal(entries[0]!.mtime, 1700000000.5);
    assert.deepEqual(entries[0]!.xattrs.get('user.k'), Buffer.from([0, 1, 2, 255]));
    assert.equal(data.get(long)!.toString(), 'pax');
    assert.equal(entries[1]!.linkname, `/${'t'.repeat(200)}`);
    assert.equal(entries[2]!.name, `gnu/${'g'.repeat(200)}`);
    assert.equal(data.get(`gnu/${'g'.repeat(200)}`)!.toString(), 'gnu');
    assert.deepEqual([entries[3]!.type, entries[3]!.devmajor, entries[3]!.devminor, entries[3]!.mode], ['char', 1, 3, 0o666]);
  });

  it('applies global pax headers and refuses an archive that ends after a pax header', () => {
    const g = makeTar([{ name: 'a', data: 'a' }]);
    // A global header carrying uid=77 for every entry that follows.
    const withGlobal = Buffer.concat([makeTar([{ name: 'g', type: 'g', data: '10 uid=77\n' }], { noTrailer: true }), g]);
    assert.equal(read(withGlobal).entries.find((e) => e.name === 'a')!.uid, 77);
    const dangling = makeTar([{ name: 'x', type: 'x', data: '11 path=zz\n' }], { noTrailer: true });
    assert.throws(() => read(dangling), /archive is truncated/);
  });

  it('reads base-256 sizes and uids', () => {
    const tar = makeTar([{ name: 'big-uid', data: 'x', uid: 0 }]);
    // Rewrite uid as base-256 (0x80 marker) = 3000000.
    const h = tar.subarray(0, 512);
    h.fill(0, 108, 116);
    h[108] = 0x80;
    h.writeUInt32BE(3000000, 112);
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    assert.equal(read(tar).entries[0]!.uid, 3000000);
  });
});

describe('LayerApplier', () => {
  let dir: string;
  const nodeMaker = new HelperNodeMaker({ helperPath: fsopsHelperPath() });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-apply-'));
    mkdirSync(join(dir, 'fs'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  async function apply(items: TarItem[], maxSize = 1 << 30, writeMode: 'auto' | 'sync' | 'parallel' = 'auto'): Promise<string> {
    const tar = makeTar(items);
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker, maxSize, image: 'img', digest: 'sha256:layer', writeMode });
    for (let i = 0; i < tar.length; i += 1000) a.write(tar.subarray(i, i + 1000));
    const r = await a.finish();
    assert.equal(r.diffId, sha256(tar));
    return join(dir, 'fs');
  }

  for (const mode of ['sync', 'parallel'] as const) it(`writes files, dirs, symlinks, hardlinks, devices, fifos, owners, special modes, xattrs and mtimes when small files are written ${mode === 'sync' ? 'synchronously' : 'by the writer threads'}`, async () => {
    const fs = await apply([
      { name: './', type: '5', mode: 0o755, mtime: 1600000000 },
      { name: 'etc/', type: '5', mode: 0o750, uid: 0, gid: 42, mtime: 1600000001 },
      { name: 'etc/conf', data: 'conf\n', mode: 0o640, uid: 1000, gid: 1001, mtime: 1600000002 },
      { name: 'bin/su', data: '#!', mode: 0o4755, uid: 0, gid: 0 },
      { name: 'bin/sgid', data: '#!', mode: 0o2711, uid: 5, gid: 6 },
      { name: 'tmp/', type: '5', mode: 0o1777 },
      { name: 'link', type: '2', linkname: '../outside/is/fine', uid: 7, gid: 8, mtime: 1600000003 },
      { name: 'hard', type: '1', linkname: 'etc/conf' },
      { name: 'dev/null', type: '3', devmajor: 1, devminor: 3, mode: 0o666, mtime: 1600000004 },
      { name: 'dev/sda', type: '4', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
      { name: 'run/fifo', type: '6', mode: 0o620 },
      { name: 'cap', data: 'x', pax: { 'SCHILY.xattr.user.note': 'hello', 'SCHILY.xattr.trusted.overlay.redirect': '/evil' }, uid: 9 },
      { name: 'gone/.wh.old', data: '' },
      { name: 'opq/.wh..wh..opq', data: '' },
      { name: 'big', data: Buffer.alloc(300 * 1024, 7), mode: 0o600, mtime: 1600000005 },
      { name: 'hard-big', type: '1', linkname: 'big' },
    ], 1 << 30, mode);
    const st = (p: string): Stats => lstatSync(join(fs, p));
    assert.equal(readFileSync(join(fs, 'etc/conf'), 'utf8'), 'conf\n');
    assert.deepEqual([st('etc/conf').mode & 0o7777, st('etc/conf').uid, st('etc/conf').gid, st('etc/conf').mtimeMs], [0o640, 1000, 1001, 1600000002000]);
    assert.deepEqual([st('etc').mode & 0o7777, st('etc').gid, st('etc').mtimeMs], [0o750, 42, 1600000001000]);
    assert.equal(st('').mtimeMs, 1600000000000);
    assert.equal(st('bin/su').mode & 0o7777, 0o4755);
    assert.equal(st('bin/sgid').mode & 0o7777, 0o2711);
    assert.equal(st('tmp').mode & 0o7777, 0o1777);
    assert.equal(readlinkSync(join(fs, 'link')), '../outside/is/fine');
    assert.deepEqual([st('link').uid, st('link').gid, st('link').mtimeMs], [7, 8, 1600000003000]);
    assert.equal(st('hard').ino, st('etc/conf').ino);
    assert.ok(st('dev/null').isCharacterDevice());
    assert.equal(st('dev/null').rdev, (1 << 8) | 3);
    assert.equal(st('dev/null').mode & 0o7777, 0o666);
    assert.equal(st('dev/null').mtimeMs, 1600000004000);
    assert.ok(st('dev/sda').isBlockDevice());
    assert.equal(st('dev/sda').gid, 6);
    assert.ok(st('run/fifo').isFIFO());
    assert.equal(st('run/fifo').mode & 0o7777, 0o620);
    assert.equal(xattr(join(fs, 'cap'), 'user.note'), Buffer.from('hello').toString('hex'));
    assert.equal(xattr(join(fs, 'cap'), 'trusted.overlay.redirect'), undefined, 'overlay xattrs from a layer are dropped');
    assert.equal(st('cap').uid, 9);
    assert.ok(st('gone/old').isCharacterDevice());
    assert.equal(st('gone/old').rdev, 0);
    assert.equal(xattr(join(fs, 'opq'), 'trusted.overlay.opaque'), Buffer.from('y').toString('hex'));
    assert.equal(statSync(join(fs, 'gone')).mode & 0o7777, 0o755, 'implicit parents are 0755');
    assert.deepEqual([st('big').size, st('big').mode & 0o7777, st('big').mtimeMs, st('hard-big').ino], [300 * 1024, 0o600, 1600000005000, st('big').ino]);
  });

  it('writes many small files by the writer threads with their content, and waits for them before rejecting a later entry', async () => {
    const items: TarItem[] = [{ name: 'd/', type: '5' }];
    for (let i = 0; i < 200; i++) items.push({ name: `d/f${i}`, data: `file ${i}\n`.repeat(i + 1), mode: i % 2 ? 0o644 : 0o4755, uid: i % 3, mtime: 1600000000 + i });
    const fs = await apply(items, 1 << 30, 'parallel');
    for (let i = 0; i < 200; i += 37) {
      assert.equal(readFileSync(join(fs, `d/f${i}`), 'utf8'), `file ${i}\n`.repeat(i + 1));
      const s = lstatSync(join(fs, `d/f${i}`));
      assert.deepEqual([s.mode & 0o7777, s.uid, s.mtimeMs], [i % 2 ? 0o644 : 0o4755, i % 3, (1600000000 + i) * 1000]);
    }
    rmSync(join(dir, 'fs'), { recursive: true });
    mkdirSync(join(dir, 'fs'));
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker, maxSize: 1 << 30, image: 'img', digest: 'sha256:layer', writeMode: 'parallel' });
    assert.throws(() => a.write(makeTar([...items, { name: 'd/f3', data: 'again' }])), /entry "d\/f3": duplicate entry for "d\/f3"/);
    await a.abort();
  });

  /** File descriptors of this process (writer threads included) that point inside `dir`. */
  function fdsInside(d: string): string[] {
    const out: string[] = [];
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        const target = readlinkSync(`/proc/self/fd/${fd}`);
        if (target.startsWith(d)) out.push(target);
      } catch {
        // closed meanwhile
      }
    }
    return out;
  }

  it('names the entry when a writer thread fails to create a file, and leaves no file open after abort', async () => {
    const long = `d/${'x'.repeat(300)}`;
    const items: TarItem[] = [{ name: 'd/', type: '5' }, { name: 'd/a', data: 'a' }, { name: long, data: 'too long a name', gnuLongName: true }];
    for (let i = 0; i < 50; i++) items.push({ name: `d/f${i}`, data: Buffer.alloc(64 * 1024, i) });
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker, maxSize: 1 << 30, image: 'img', digest: 'sha256:layer', writeMode: 'parallel' });
    try {
      a.write(makeTar(items));
      await assert.rejects(a.finish(), (e: Error) => {
        assert.match(e.message, /^failed to unpack layer "sha256:layer" of image "img": entry "d\/x{300}": ENAMETOOLONG/);
        return true;
      });
    } finally {
      await a.abort();
    }
    assert.equal(readFileSync(join(dir, 'fs', 'd', 'a'), 'utf8'), 'a');
    assert.deepEqual(fdsInside(dir), []);
  });

  it('closes the file a writer thread has open when the archive ends inside it', async () => {
    const tar = makeTar([{ name: 'big', data: Buffer.alloc(3 * 1024 * 1024, 1) }], { noTrailer: true });
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker, maxSize: 1 << 30, image: 'img', digest: 'sha256:layer', writeMode: 'parallel' });
    try {
      a.write(tar.subarray(0, 2 * 1024 * 1024));
      await assert.rejects(a.finish(), /entry "big": malformed tar: archive is truncated inside entry "big"/);
    } finally {
      await a.abort();
    }
    assert.deepEqual(fdsInside(dir), []);
  });

  it('fails the layer clearly when its writer thread dies', async () => {
    const pool = new LayerWriterPool({ size: 1 });
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker, maxSize: 1 << 30, image: 'img', digest: 'sha256:layer', writeMode: 'parallel', writers: pool });
    try {
      a.write(makeTar([{ name: 'a', data: 'a' }, { name: 'b', data: Buffer.alloc(600 * 1024, 2) }]));
      await pool.close();
      await assert.rejects(a.finish(), /failed to unpack layer "sha256:layer" of image "img": layer writer (thread exited with code \d+|pool is closed)/);
    } finally {
      await a.abort();
      await pool.close();
    }
  });

  it('reports saturation while the writer threads are behind, and writes every byte', async () => {
    const big = Buffer.alloc(48 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const tar = makeTar([{ name: 'big', data: big }, { name: 'small', data: 'end' }]);
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker, maxSize: 1 << 30, image: 'img', digest: 'sha256:layer', writeMode: 'parallel' });
    let saturated = 0;
    try {
      for (let i = 0; i < tar.length; i += 1024 * 1024) {
        a.write(tar.subarray(i, i + 1024 * 1024));
        if (a.saturated) {
          saturated++;
          await a.whenWritable();
        }
      }
      const r = await a.finish();
      assert.equal(r.diffId, sha256(tar));
    } finally {
      await a.abort();
    }
    assert.ok(saturated > 0, 'the writer fell behind 1 MiB writes at least once');
    assert.equal(createHash('sha256').update(readFileSync(join(dir, 'fs', 'big'))).digest('hex'), createHash('sha256').update(big).digest('hex'));
    assert.equal(readFileSync(join(dir, 'fs', 'small'), 'utf8'), 'end');
  });

  it('refuses a layer over the size cap as resource exhausted', async () => {
    await assert.rejects(apply([{ name: 'big', data: Buffer.alloc(100000) }], 50000), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'resource_exhausted');
      assert.match(e.message, /failed to unpack layer "sha256:layer" of image "img": (entry "big": )?decompressed size exceeds the limit of 50000 bytes/);
      return true;
    });
  });

  it('fails clearly when the fsops helper cannot start', async () => {
    const tar = makeTar([{ name: 'd/.wh.x', data: '' }]);
    const a = new LayerApplier({ dir: join(dir, 'fs'), nodeMaker: new HelperNodeMaker({ helperPath: join(dir, 'no-such-helper') }), maxSize: 1 << 20, image: 'img', digest: 'sha256:layer' });
    a.write(tar);
    await assert.rejects(a.finish(), /failed to unpack layer "sha256:layer" of image "img": entry "d\/x": failed to start fsops helper ".*no-such-helper"/);
  });

  it('names the entry of a hard link to a directory', async () => {
    await assert.rejects(apply([{ name: 'd/', type: '5' }, { name: 'h', type: '1', linkname: 'd' }]), /entry "h": hard link target "d" is a directory/);
  });
});
