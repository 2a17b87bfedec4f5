/** Runtime logic over FakeSys: nothing half-applied on failure, state and signals. */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeSys } from '../../../agent/sys/fake.js';
import { ContainerSetupError } from '../../../agent/sys/index.js';
import { CgroupV2Manager, Runtime, signalNumber, writeBundle } from '../../../agent/runtime/index.js';

describe('Runtime (FakeSys)', () => {
  let dir: string;
  let sys: FakeSys;
  let runtime: Runtime;
  let bundle: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-rt-fake-'));
    sys = new FakeSys();
    runtime = new Runtime({ sys, cgroups: new CgroupV2Manager(sys, '/sys/fs/cgroup', '/sys/fs/cgroup/berth'), root: join(dir, 'root') });
    bundle = join(dir, 'bundle');
    await mkdir(join(bundle, 'rootfs'), { recursive: true });
    await writeBundle(bundle, 'rootfs', { Cmd: ['sh'] }, { dns: [], hostNofileHard: 20000, resources: { memoryBytes: 64 << 20 } });
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('hands the helper a spec with the cgroup, log and state paths', async () => {
    const info = await runtime.create('c1', bundle);
    assert.equal(info.status, 'created');
    const spec = sys.specs[0];
    assert.ok(spec);
    assert.equal(spec.stateDir, join(dir, 'root', 'c1'));
    const cg = `/sys/fs/cgroup/berth/${runtime.cgroupName('c1')}`;
    assert.match(cg, /\/berth\/[0-9a-f]{8}-c1$/);
    assert.deepEqual(spec.cgroupProcs, [`${cg}/cgroup.procs`]);
    assert.equal(spec.oomFile, `${cg}/memory.events`);
    assert.deepEqual(spec.log, { path: join(dir, 'root', 'c1', 'container.log'), maxBytes: 10 * 1024 * 1024, maxFiles: 3 });
    assert.equal(sys.files.get(`${cg}/memory.max`), String(64 << 20));
    assert.equal(spec.capabilities?.effective, 0xa80425fbn);
  });

  it('removes the cgroup and the state dir when the helper fails', async () => {
    sys.failNext('createContainer', new ContainerSetupError('mount /proc: boom'));
    await assert.rejects(runtime.create('c1', bundle), /failed to create container: mount \/proc: boom/);
    assert.ok(!existsSync(join(dir, 'root', 'c1')));
    assert.ok(!sys.dirs.has(`/sys/fs/cgroup/berth/${runtime.cgroupName('c1')}`));
    assert.deepEqual(await runtime.list(), []);
  });

  it('leaves nothing when a cgroup limit cannot be written', async () => {
    sys.failNext('cgroupWrite', new Error('EACCES'));
    await assert.rejects(runtime.create('c1', bundle), /EACCES/);
    assert.ok(!existsSync(join(dir, 'root', 'c1')));
    assert.equal(sys.callsOf('createContainer').length, 0);
  });

  it('rejects bad ids and a bad bundle before touching anything', async () => {
    await assert.rejects(runtime.create('../x', bundle), /container id: expected 1-128 letters/);
    await writeFile(join(bundle, 'config.json'), '{"ociVersion": "1.0.2"}');
    await assert.rejects(runtime.create('c1', bundle), /config\.json: root\.path: expected the rootfs path/);
    assert.equal(sys.calls.filter((c) => c.method === 'cgroupMkdir').length, 0);
  });

  it('refuses to reuse a cgroup that already exists and leaves it alone', async () => {
    const cg = `/sys/fs/cgroup/berth/${runtime.cgroupName('c1')}`;
    sys.dirs.add(cg);
    await assert.rejects(runtime.create('c1', bundle), { name: 'AlreadyExistsError' });
    assert.ok(sys.dirs.has(cg));
    assert.ok(!existsSync(join(dir, 'root', 'c1')));
  });

  it('signals the init only while it is the same process', async () => {
    const info = await runtime.create('c1', bundle);
    await runtime.kill('c1', 'TERM');
    assert.deepEqual(sys.signals, [{ pid: info.pid, signal: 15 }]);
    sys.processes.set(info.pid as number, 1); // the pid now belongs to another process
    assert.equal((await runtime.state('c1')).status, 'stopped');
    await assert.rejects(runtime.kill('c1', 'KILL'), /it is stopped, expected created or running/);
    assert.equal(sys.signals.length, 1);
  });

  it('puts the old limits back when an update fails half-way', async () => {
    await runtime.create('c1', bundle, { start: true });
    const cg = `/sys/fs/cgroup/berth/${runtime.cgroupName('c1')}`;
    // memory.max is written first, then pids.max fails.
    const orig = sys.cgroupWrite.bind(sys);
    let writes = 0;
    sys.cgroupWrite = async (path: string, value: string) => {
      if (++writes === 2 && path.endsWith('pids.max')) throw new Error('EINVAL');
      return orig(path, value);
    };
    await assert.rejects(runtime.update('c1', { memoryBytes: 128 << 20, pidsMax: 10 }), /EINVAL/);
    assert.equal(sys.files.get(`${cg}/memory.max`), String(64 << 20));
    assert.equal((await runtime.state('c1')).resources.memoryBytes, 64 << 20);
  });

  it('parses signal names and numbers', () => {
    assert.equal(signalNumber('TERM'), 15);
    assert.equal(signalNumber('SIGKILL'), 9);
    assert.equal(signalNumber('9'), 9);
    assert.throws(() => signalNumber('BOGUS'), /unknown signal "BOGUS"/);
    assert.throws(() => signalNumber(0), /signal: expected a signal number from 1 to 64, got "0"/);
  });
});
