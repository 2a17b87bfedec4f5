/** config.json validation and bundle generation (no containers). */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '../../../lib/errors.js';
import { mergeProcess, mountFlags, MS, resolveConfig, resolveUser, writeBundle } from '../../../agent/runtime/index.js';

const base = () => ({
  ociVersion: '1.0.2',
  process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', env: ['PATH=/bin'] },
  root: { path: 'rootfs' },
  linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }, { type: 'network' }] },
});

describe('resolveConfig', () => {
  it('resolves the rootfs and bind sources against the bundle dir', () => {
    const cfg = resolveConfig({ ...base(), mounts: [{ destination: '/data', type: 'bind', source: 'data', options: ['rbind', 'ro'] }] }, '/b');
    assert.equal(cfg.rootfs, '/b/rootfs');
    assert.deepEqual(cfg.mounts, [{ destination: '/data', type: 'bind', source: '/b/data', flags: MS.BIND | MS.REC | MS.RDONLY, data: '' }]);
    assert.deepEqual(cfg.joinNamespaces, []);
  });

  it('lists every problem with its field when the config is bad', () => {
    const bad = { ...base(), process: { user: { uid: -1 }, args: [], cwd: 'rel' }, hostname: 'a b', linux: { namespaces: [{ type: 'user' }], seccomp: { defaultAction: 'SCMP_ACT_ALLOW' } } };
    try {
      resolveConfig(bad, '/b');
      assert.fail('expected a ValidationError');
    } catch (e) {
      assert.ok(e instanceof ValidationError);
      const paths = e.problems.map((p) => p.path);
      for (const p of ['process.args', 'process.cwd', 'process.user', 'hostname', 'linux.seccomp', 'linux.namespaces[0].type', 'linux.namespaces']) {
        assert.ok(paths.includes(p), `missing problem for ${p}: ${paths.join(', ')}`);
      }
    }
  });

  it('rejects an rlimit above the host hard limit, naming the limit', () => {
    const cfg = { ...base(), process: { ...base().process, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1048576 }] } };
    assert.throws(() => resolveConfig(cfg, '/b', { RLIMIT_NOFILE: 20000 }),
      /process\.rlimits\[0\]\.hard: RLIMIT_NOFILE hard limit 1048576 exceeds this host's hard limit 20000/);
  });

  it('shares the runtime namespace for a namespace the config does not list', () => {
    const cfg = resolveConfig({ ...base(), linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'network', path: '/run/netns/x' }] } }, '/b');
    assert.deepEqual(cfg.joinNamespaces, [{ type: 'net', path: '/run/netns/x' }, { type: 'ipc', path: '/proc/self/ns/ipc' }]);
  });

  it('rejects ambient capabilities that are not permitted and inheritable', () => {
    const cfg = { ...base(), process: { ...base().process, capabilities: { permitted: ['CAP_KILL'], ambient: ['CAP_KILL'] } } };
    assert.throws(() => resolveConfig(cfg, '/b'), /process\.capabilities\.ambient: every ambient capability must also be permitted and inheritable/);
    const unknown = { ...base(), process: { ...base().process, capabilities: { bounding: ['CAP_NOPE'] } } };
    assert.throws(() => resolveConfig(unknown, '/b'), /unknown capability "CAP_NOPE"/);
  });

  it('selects the seccomp filter by annotation and rejects unknown profiles', () => {
    assert.equal(resolveConfig({ ...base(), annotations: { 'io.berth.seccomp': 'default' } }, '/b').seccomp, 'default');
    assert.equal(resolveConfig({ ...base(), annotations: { 'io.berth.seccomp': 'unconfined' } }, '/b').seccomp, undefined);
    assert.throws(() => resolveConfig({ ...base(), annotations: { 'io.berth.seccomp': 'strict' } }, '/b'),
      /annotations\.io\.berth\.seccomp: expected "default" or "unconfined", got "strict"/);
  });

  it('turns resources into limits', () => {
    const cfg = resolveConfig({ ...base(), linux: { ...base().linux, resources: { memory: { limit: 64 << 20 }, cpu: { quota: 50000, period: 100000, shares: 512 }, pids: { limit: 10 } } } }, '/b');
    assert.deepEqual(cfg.resources, { memoryBytes: 64 << 20, cpuQuotaUs: 50000, cpuPeriodUs: 100000, cpuShares: 512, pidsMax: 10 });
  });
});

describe('mountFlags', () => {
  it('separates flags from filesystem data', () => {
    assert.deepEqual(mountFlags(['nosuid', 'nodev', 'mode=755', 'size=65536k', 'ro', 'rw']), { flags: MS.NOSUID | MS.NODEV, data: 'mode=755,size=65536k' });
  });
});

describe('mergeProcess', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['default'], Env: ['A=1', 'PATH=/x'], WorkingDir: '/app', User: 'app' };

  it('appends the image Cmd to the Entrypoint when no command is given', () => {
    assert.deepEqual(mergeProcess(image), { args: ['/entry', 'default'], env: ['A=1', 'PATH=/x'], cwd: '/app', user: 'app' });
  });

  it('replaces Cmd with the command and keeps the Entrypoint', () => {
    assert.deepEqual(mergeProcess(image, { command: ['x', 'y'] }).args, ['/entry', 'x', 'y']);
  });

  it('drops the image Cmd when the entrypoint is replaced', () => {
    assert.deepEqual(mergeProcess(image, { entrypoint: ['/other'] }).args, ['/other']);
  });

  it('lets run-time env override the image env and adds PATH, HOSTNAME and TERM', () => {
    const m = mergeProcess({ Cmd: ['sh'], Env: ['A=1'] }, { env: ['A=2', 'B=3'], hostname: 'h', tty: true });
    assert.deepEqual(m.env, ['A=2', 'B=3', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=h', 'TERM=xterm']);
  });

  it('fails with a clear message when there is nothing to run', () => {
    assert.throws(() => mergeProcess({}), /command: the image has no Entrypoint or Cmd and none was given/);
    assert.throws(() => mergeProcess({ Cmd: ['sh'] }, { env: ['NOEQUALS'] }), /env\[0\]: expected "KEY=value", got "NOEQUALS"/);
  });
});

describe('resolveUser and writeBundle', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-rt-bundle-'));
    await mkdir(join(dir, 'rootfs', 'etc'), { recursive: true });
    await writeFile(join(dir, 'rootfs', 'etc', 'passwd'), 'root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n');
    await writeFile(join(dir, 'rootfs', 'etc', 'group'), 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves names, numbers and groups from the image files', async () => {
    const rootfs = join(dir, 'rootfs');
    assert.deepEqual(await resolveUser(rootfs, 'app'), { uid: 1000, gid: 1000, additionalGids: [2000] });
    assert.deepEqual(await resolveUser(rootfs, '1000:extra'), { uid: 1000, gid: 2000, additionalGids: [] });
    assert.deepEqual(await resolveUser(rootfs, '4242'), { uid: 4242, gid: 0, additionalGids: [] });
    await assert.rejects(resolveUser(rootfs, 'ghost'), /user: no user "ghost" in the image's \/etc\/passwd/);
  });

  it('writes a config.json the runtime accepts, with Docker defaults', async () => {
    const spec = await writeBundle(dir, 'rootfs', { Cmd: ['sh'] }, { hostname: 'web-1', resources: { memoryBytes: 64 << 20, cpus: 0.5, pidsLimit: 100 }, dns: ['192.0.2.1'], hostNofileHard: 20000 });
    assert.equal(spec.process.rlimits?.[0]?.hard, 20000);
    const cfg = resolveConfig(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')), dir, { RLIMIT_NOFILE: 20000 });
    assert.equal(cfg.hostname, 'web-1');
    assert.equal(cfg.capabilities.effective, 0xa80425fbn);
    assert.deepEqual(cfg.resources, { memoryBytes: 64 << 20, cpuQuotaUs: 50000, cpuPeriodUs: 100000, pidsMax: 100 });
    assert.equal(await readFile(join(dir, 'resolv.conf'), 'utf8'), 'nameserver 192.0.2.1\n');
    assert.ok(cfg.mounts.some((m) => m.destination === '/etc/hosts' && m.source === join(dir, 'hosts')));
  });
});
