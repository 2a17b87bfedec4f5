import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BindNotAllowedError, checkAllowBind, LocalVolumes, VolumeInUseError } from '../../../agent/volumes/index.js';
import { silentLogger } from '../../../lib/index.js';
import { makeTempDir } from '../../harness/index.js';

describe('agent/volumes LocalVolumes', () => {
  let dir = '';
  let root = '';
  let allowed = '';
  let users: Record<string, string[]> = {};

  function store(allowBind: string[] = [allowed]): LocalVolumes {
    return new LocalVolumes({ root, allowBind, logger: silentLogger(), inUse: (name) => users[name] ?? [] });
  }

  beforeEach(() => {
    dir = makeTempDir('volumes-unit');
    root = join(dir, 'root');
    allowed = join(dir, 'allowed');
    mkdirSync(join(allowed, 'sub'), { recursive: true });
    writeFileSync(join(allowed, 'file.txt'), 'x');
    mkdirSync(join(dir, 'outside'));
    users = {};
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a volume as <root>/volumes/<name>/_data and returns the same one when created again', async () => {
    const v = store();
    await v.open();
    const a = await v.create('data', { labels: { team: 'a' }, createdUnixMs: 1234 });
    assert.equal(a.mountpoint, join(root, 'volumes', 'data', '_data'));
    assert.ok(statSync(a.mountpoint).isDirectory());
    assert.equal(statSync(a.mountpoint).mode & 0o777, 0o755);
    writeFileSync(join(a.mountpoint, 'keep'), 'kept');
    const again = await v.create('data', { labels: { other: 'b' } });
    assert.deepEqual(again, { name: 'data', mountpoint: a.mountpoint, createdUnixMs: 1234, labels: { team: 'a' } });
    assert.equal(readFileSync(join(a.mountpoint, 'keep'), 'utf8'), 'kept');
    assert.deepEqual((await v.list()).map((x) => x.name), ['data']);
    // A new store over the same root sees it (it is on disk, not in memory).
    assert.equal((await store().get('data'))?.createdUnixMs, 1234);
  });

  it('creates concurrent first uses of one name once when they race', async () => {
    const v = store();
    await v.open();
    const all = await Promise.all(Array.from({ length: 8 }, () => v.create('race')));
    assert.equal(new Set(all.map((x) => x.createdUnixMs)).size, 1);
    assert.deepEqual(readdirSync(join(root, 'volumes')), ['race']);
  });

  it('refuses bad names and labels naming the field', async () => {
    const v = store();
    await assert.rejects(v.create('../etc'), /name: expected a volume name/);
    await assert.rejects(v.create('ok', { labels: { 'bad key!': 'v' } }), /labels\.bad key!: /);
    await assert.rejects(v.remove('a/b'), /name: expected a volume name/);
  });

  it('refuses to remove a volume a container uses and removes it with its data afterwards', async () => {
    const v = store();
    await v.open();
    const a = await v.create('data');
    users['data'] = ['web-1'];
    await assert.rejects(v.remove('data'), (err: unknown) => {
      assert.ok(err instanceof VolumeInUseError);
      assert.equal(err.code, 'failed_precondition');
      assert.match(err.message, /^failed to remove volume "data": it is in use by container "web-1"/);
      return true;
    });
    assert.ok(existsSync(a.mountpoint));
    users = {};
    assert.equal(await v.remove('data'), true);
    assert.equal(existsSync(join(root, 'volumes', 'data')), false);
    assert.equal(await v.remove('data'), false);
    assert.deepEqual(readdirSync(join(root, 'volumes')), []);
  });

  it('deletes what a crash left of a create or remove when opened', async () => {
    mkdirSync(join(root, 'volumes', '.tmp-abc', '_data'), { recursive: true });
    mkdirSync(join(root, 'volumes', '.trash-def'), { recursive: true });
    await store().open();
    assert.deepEqual(readdirSync(join(root, 'volumes')), []);
  });

  it('allows bind sources under an allowed directory and returns their real path', async () => {
    const v = store();
    await v.open();
    assert.equal(await v.checkBind(join(allowed, 'sub'), '/sub'), join(allowed, 'sub'));
    assert.equal(await v.checkBind(allowed, '/all'), allowed);
    assert.equal(await v.checkBind(join(allowed, 'file.txt'), '/f'), join(allowed, 'file.txt'));
  });

  it('refuses bind sources outside the allowed directories naming the path and the list', async () => {
    const v = store();
    await v.open();
    await assert.rejects(v.checkBind(join(dir, 'outside'), '/x'), (err: unknown) => {
      assert.ok(err instanceof BindNotAllowedError);
      assert.equal(err.code, 'permission_denied');
      assert.match(err.message, new RegExp(`^failed to mount "${join(dir, 'outside')}" at "/x": .* only allowed from under "${allowed}" \\(berth agent --allow-bind\\)$`));
      return true;
    });
    // A sibling whose name starts with the allowed directory's name is not under it.
    mkdirSync(`${allowed}2`);
    await assert.rejects(v.checkBind(`${allowed}2`, '/x'), BindNotAllowedError);
  });

  it('refuses a symlink under an allowed directory that leads out of it', async () => {
    symlinkSync(join(dir, 'outside'), join(allowed, 'link'));
    const v = store();
    await v.open();
    await assert.rejects(v.checkBind(join(allowed, 'link'), '/x'), /resolves to ".*\/outside", which is not under an allowed directory/);
  });

  it('refuses every bind mount when no directory is allowed, and a missing path clearly', async () => {
    const none = store([]);
    await none.open();
    await assert.rejects(none.checkBind(allowed, '/x'), /this agent allows no bind mounts; expected a named volume, or start the agent with --allow-bind DIR/);
    const v = store();
    await assert.rejects(v.checkBind(join(allowed, 'missing'), '/x'), /the host path does not exist/);
  });

  it('resolves mounts in order, creating volumes on first use, and creates nothing when a bind is refused', async () => {
    const v = store();
    await v.open();
    const mounts = await v.resolve([
      { type: 'volume', source: 'data', destination: '/data', readOnly: false },
      { type: 'bind', source: join(allowed, 'sub'), destination: '/cfg', readOnly: true },
    ]);
    assert.deepEqual(mounts, [
      { source: join(root, 'volumes', 'data', '_data'), destination: '/data', readOnly: false },
      { source: join(allowed, 'sub'), destination: '/cfg', readOnly: true },
    ]);
    await assert.rejects(v.resolve([
      { type: 'volume', source: 'fresh', destination: '/fresh', readOnly: false },
      { type: 'bind', source: '/etc', destination: '/etc2', readOnly: false },
    ]), BindNotAllowedError);
    assert.equal(await v.get('fresh'), undefined);
    await assert.rejects(v.checkBinds([{ type: 'volume', source: 'a', destination: 'rel', readOnly: false }]), /spec\.mounts\[0\]\.destination: expected an absolute path/);
  });

  it('checks --allow-bind values: absolute paths without "." or ".."', () => {
    assert.deepEqual(checkAllowBind(['/srv/', '/data']), ['/srv', '/data']);
    assert.throws(() => checkAllowBind(['srv']), /--allow-bind: expected an absolute host path/);
    assert.throws(() => checkAllowBind(['/srv/../etc']), /without "\." or "\.\." components/);
  });
});
