import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir, startRegistryWithImages, tailLog, waitFor, type RegistryWithImages } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';

interface VolumeJson {
  Name: string;
  Driver: string;
  Node: string;
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  InUseBy: string[];
}

interface ContainerJson {
  name: string;
  status?: { state?: string };
}

describe('cli volumes end to end (real etcd, NATS, controller, agent, registry and containers)', function () {
  this.timeout(240_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let image = '';
  let dir = '';
  let allowed = '';

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    assert.ok(image, 'busybox was pushed');
    dir = makeTempDir('volumes-e2e');
    allowed = join(dir, 'allowed');
    mkdirSync(join(allowed, 'config'), { recursive: true });
    writeFileSync(join(allowed, 'config', 'app.conf'), 'greeting=hello from the host\n');
    // A symlink inside the allowed directory that points out of it.
    symlinkSync('/etc', join(allowed, 'escape'));
    cluster = await startCluster();
    await cluster.startReadyAgent('node-1', ['--allow-bind', allowed]);
  });

  after(async () => {
    // Stops agents, controller, NATS and etcd, then removes the agents' containers and roots.
    await cluster?.stop();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function cli(args: string[], stdin?: string): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args, stdin === undefined ? {} : { stdin });
  }

  async function names(): Promise<string[]> {
    const r = await cli(['volume', 'ls', '-q']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean);
  }

  async function inspect(name: string): Promise<VolumeJson> {
    const r = await cli(['volume', 'inspect', name]);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as VolumeJson[];
    assert.equal(list.length, 1);
    return list[0] as VolumeJson;
  }

  async function containerNames(): Promise<string[]> {
    const r = await cli(['ps', '-a', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as ContainerJson[]).map((c) => c.name);
  }

  it('keeps data written by one container for a second container on the same node after the first is removed', async () => {
    const write = await cli(['run', '--name', 'writer', '-v', 'data:/data', image, 'sh', '-c', 'echo kept across containers > /data/note; echo written']);
    assert.equal(write.code, 0, write.stderr);
    assert.equal(write.stdout, 'written\n');

    const v = await inspect('data');
    assert.equal(v.Name, 'data');
    assert.equal(v.Node, 'node-1');
    assert.equal(v.Driver, 'local');
    assert.deepEqual(v.InUseBy, ['writer']);
    assert.match(v.Mountpoint, /\/volumes\/data\/_data$/);
    assert.ok(!Number.isNaN(Date.parse(v.CreatedAt)), v.CreatedAt);
    // The data is a plain directory on the node.
    assert.equal(readFileSync(join(v.Mountpoint, 'note'), 'utf8'), 'kept across containers\n');

    const rm = await cli(['rm', 'writer']);
    assert.equal(rm.code, 0, rm.stderr);
    await waitFor('writer to be gone', async () => !(await containerNames()).includes('writer'), 30_000, 500);
    assert.deepEqual((await inspect('data')).InUseBy, []);

    const read = await cli(['run', '--rm', '-v', 'data:/data', image, 'cat', '/data/note']);
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout, 'kept across containers\n');
  });

  it('refuses writes through a read-only (":ro") mount and keeps the data readable', async () => {
    const ro = await cli(['run', '--rm', '-v', 'rodata:/data:ro', image, 'sh', '-c', 'cat /data/x 2>/dev/null; echo nope > /data/x']);
    assert.notEqual(ro.code, 0, 'writing to a read-only volume must fail');
    assert.match(ro.stderr, /Read-only file system/);
    const v = await inspect('rodata');
    assert.equal(existsSync(join(v.Mountpoint, 'x')), false);

    const rw = await cli(['run', '--rm', '-v', 'rodata:/data', image, 'sh', '-c', 'echo yes > /data/x']);
    assert.equal(rw.code, 0, rw.stderr);
    const back = await cli(['run', '--rm', '-v', 'rodata:/data:ro', image, 'cat', '/data/x']);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(back.stdout, 'yes\n');
  });

  it('mounts a host path under --allow-bind, read-only when asked', async () => {
    const read = await cli(['run', '--rm', '-v', `${join(allowed, 'config')}:/etc/app:ro`, image, 'cat', '/etc/app/app.conf']);
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout, 'greeting=hello from the host\n');
    const write = await cli(['run', '--rm', '-v', `${join(allowed, 'config')}:/etc/app:ro`, image, 'sh', '-c', 'echo x > /etc/app/new']);
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /Read-only file system/);
    assert.equal(existsSync(join(allowed, 'config', 'new')), false);
  });

  it('refuses a bind mount outside the allowed directories before anything is created', async () => {
    const before = await names();
    const r = await cli(['run', '--name', 'badbind', '-v', 'fresh:/fresh', '-v', '/etc:/host-etc', image, 'true']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^error: .*"\/etc".*only allowed from under ".*\/allowed"/m);
    assert.ok(!(await containerNames()).includes('badbind'), 'no container was left');
    assert.deepEqual(await names(), before, 'no volume was created');

    // A symlink inside an allowed directory that leads out of it is refused too.
    const link = await cli(['run', '--name', 'badlink', '-v', `${join(allowed, 'escape')}:/host`, image, 'true']);
    assert.equal(link.code, 1, link.stdout);
    assert.match(link.stderr, /resolves to "\/etc", which is not under an allowed directory/);
    assert.ok(!(await containerNames()).includes('badlink'));
  });

  it('resolves a mount destination through a symlink inside the container, never on the host', async () => {
    // A volume holding an absolute symlink to /etc, then a second mount whose destination goes through it.
    const link = await cli(['run', '--rm', '-v', 'links:/links', image, 'ln', '-s', '/etc', '/links/escape']);
    assert.equal(link.code, 0, link.stderr);
    const marker = `berth-volume-escape-${process.pid}`;
    assert.equal(existsSync(join('/etc', marker)), false);
    const run = await cli(['run', '--rm', '-v', 'links:/links', '-v', `target:/links/escape/${marker}`, image, 'sh', '-c', `test -d /etc/${marker} && echo inside`]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'inside\n');
    assert.equal(existsSync(join('/etc', marker)), false, 'nothing was created on the host');
  });

  it('rejects bad -v values with the flag named before contacting anything', async () => {
    const relative = await cli(['run', '-v', 'data:relative', image, 'true']);
    assert.equal(relative.code, 2);
    assert.match(relative.stderr, /^error: -v, --volume: destination: expected an absolute path inside the container/m);
    const mode = await cli(['run', '-v', 'data:/data:rx', image, 'true']);
    assert.equal(mode.code, 2);
    assert.match(mode.stderr, /expected the mode "ro" or "rw"/);
    const dup = await cli(['run', '-v', 'a:/data', '-v', 'b:/data/', image, 'true']);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /expected each destination once/);
    const proc = await cli(['run', '-v', 'a:/proc/x', image, 'true']);
    assert.equal(proc.code, 2);
    assert.match(proc.stderr, /outside \/proc/);
    const bad = await cli(['volume', 'create', 'no/slashes']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /expected a volume name of 1 to 64 letters/);
  });

  it('mounts spec.volumes of a workload into its replicas, all on the node holding the volume', async () => {
    const manifest = [
      'apiVersion: berth/v1',
      'kind: Workload',
      'metadata:',
      '  name: vol-db',
      'spec:',
      `  image: ${image}`,
      '  replicas: 2',
      "  command: [sh, -c, 'cat /etc/app/app.conf >> /data/replicas; sleep 600']",
      '  volumes:',
      '    - name: wl-data',
      '      mountPath: /data',
      `    - hostPath: ${join(allowed, 'config')}`,
      '      mountPath: /etc/app',
      '      readOnly: true',
      '',
    ].join('\n');
    const applied = await cli(['apply', '-f', '-'], manifest);
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor('both replicas to use the volume', async () => {
      const r = await cli(['volume', 'inspect', 'wl-data']);
      return r.code === 0 && (JSON.parse(r.stdout) as VolumeJson[])[0]?.InUseBy.length === 2;
    }, 90_000, 500);
    const v = await inspect('wl-data');
    assert.equal(v.Node, 'node-1');
    await waitFor('both replicas to write', () => (existsSync(join(v.Mountpoint, 'replicas')) ? readFileSync(join(v.Mountpoint, 'replicas'), 'utf8').split('\n').filter(Boolean).length === 2 : false), 60_000, 500);
    const read = await cli(['run', '--rm', '-v', 'wl-data:/data:ro', image, 'cat', '/data/replicas']);
    assert.equal(read.code, 0, read.stderr);
    assert.equal(read.stdout, 'greeting=hello from the host\ngreeting=hello from the host\n');

    const refused = await cli(['volume', 'rm', 'wl-data']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /in use by containers "vol-db-/);
    assert.equal((await cli(['delete', 'workload', 'vol-db'])).code, 0);
    await waitFor('the replicas to be gone', async () => (await inspect('wl-data')).InUseBy.length === 0, 60_000, 500);
  });

  it('refuses volume rm while a container uses the volume, and removes it afterwards', async () => {
    const run = await cli(['run', '-d', '--name', 'holder', '-v', 'held:/held', image, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    const refused = await cli(['volume', 'rm', 'held']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error: failed to remove volume "held": it is in use by container "holder"/m);
    assert.ok((await names()).includes('held'));
    const mountpoint = (await inspect('held')).Mountpoint;
    assert.ok(existsSync(mountpoint));

    const stop = await cli(['rm', '-f', 'holder']);
    assert.equal(stop.code, 0, stop.stderr);
    await waitFor('holder to be gone', async () => !(await containerNames()).includes('holder'), 30_000, 500);
    const removed = await cli(['volume', 'rm', 'held']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, 'held\n');
    assert.ok(!(await names()).includes('held'));
    assert.equal(existsSync(mountpoint), false, 'its data was deleted on the node');

    const missing = await cli(['volume', 'rm', 'held']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /volume "held" not found/);
  });

  it('creates, lists, inspects and prunes volumes', async () => {
    const a = await cli(['volume', 'create', '-l', 'team=a', 'made-a']);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout, 'made-a\n');
    const b = await cli(['volume', 'create', '--node', 'node-1', 'made-b']);
    assert.equal(b.code, 0, b.stderr);
    const again = await cli(['volume', 'create', 'made-a']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /failed to create volume "made-a": the name is already in use/);
    const nowhere = await cli(['volume', 'create', '--node', 'node-9', 'made-c']);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.stderr, /node "node-9" is not registered/);

    const table = await cli(['volume', 'ls']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^DRIVER\s+VOLUME NAME\s+NODE\s+CREATED\s+USED BY\n/);
    assert.match(table.stdout, /local\s+made-a\s+node-1\s+\S.* ago\s+-\n/);

    const json = await cli(['volume', 'ls', '--format', 'json', '--filter', 'team=a']);
    assert.equal(json.code, 0, json.stderr);
    const listed = JSON.parse(json.stdout) as VolumeJson[];
    assert.deepEqual(listed.map((v) => v.Name), ['made-a']);
    assert.deepEqual(listed[0]?.Labels, { team: 'a' });

    const both = await cli(['volume', 'inspect', 'made-a', 'made-b']);
    assert.equal(both.code, 0, both.stderr);
    assert.deepEqual((JSON.parse(both.stdout) as VolumeJson[]).map((v) => v.Name), ['made-a', 'made-b']);
    const unknown = await cli(['volume', 'inspect', 'made-a', 'nope']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /volume "nope" not found/);

    // A volume in use survives a prune.
    const keep = await cli(['run', '-d', '--name', 'keeper', '-v', 'kept:/k', image, 'sleep', '600']);
    assert.equal(keep.code, 0, keep.stderr);
    const declined = await cli(['volume', 'prune'], 'n\n');
    assert.equal(declined.code, 1);
    assert.ok((await names()).includes('made-a'), 'nothing removed when not confirmed');
    const pruned = await cli(['volume', 'prune', '-f']);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /^Deleted Volumes:\n/);
    assert.match(pruned.stdout, /\nmade-a\n/);
    assert.match(pruned.stdout, /Total volumes deleted: \d+\n$/);
    assert.deepEqual(await names(), ['kept']);
    const rm = await cli(['rm', '-f', 'keeper']);
    assert.equal(rm.code, 0, rm.stderr);
  });
});

describe('cli volumes end to end on two nodes (placement follows the volume)', function () {
  this.timeout(240_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let image = '';

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    assert.ok(image, 'busybox was pushed');
    cluster = await startCluster();
    const agents = [cluster.startAgent('node-1'), cluster.startAgent('node-2')];
    const c = cluster;
    await waitFor('both nodes to be Ready', async () => {
      for (const a of agents) if (a.exited()) throw new Error(`agent exited early:\n${tailLog(a)}`);
      const r = await c.cli(['get', 'nodes', '-o', 'json']);
      return r.code === 0 && (r.stdout.match(/NODE_STATE_READY/g) ?? []).length === 2;
    }, 60_000, 500);
  });

  after(async () => {
    await cluster?.stop();
    await reg?.stop();
  });

  function cli(args: string[]): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  }

  it('runs containers that use a volume on its node, and says why when that node is cordoned or NotReady', async () => {
    const made = await cli(['volume', 'create', '--node', 'node-2', 'pinned']);
    assert.equal(made.code, 0, made.stderr);
    for (let i = 0; i < 3; i++) {
      const run = await cli(['run', '-d', '--name', `pin-${i}`, '-v', 'pinned:/p', image, 'sh', '-c', `echo ${i} >> /p/log`]);
      assert.equal(run.code, 0, run.stderr);
    }
    const ps = await cli(['ps', '-a', '--format', 'json']);
    assert.equal(ps.code, 0, ps.stderr);
    const nodes = (JSON.parse(ps.stdout) as Array<{ name: string; node?: string }>).filter((c) => c.name.startsWith('pin-')).map((c) => c.node);
    assert.deepEqual(nodes, ['node-2', 'node-2', 'node-2']);

    // --node elsewhere cannot win over the volume.
    const elsewhere = await cli(['run', '--node', 'node-1', '-v', 'pinned:/p', image, 'true']);
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /no node can take it: 0\/2 nodes: volume "pinned" is on node "node-2" which is not a required node/);

    const cordon = await cli(['node', 'cordon', 'node-2']);
    assert.equal(cordon.code, 0, cordon.stderr);
    const cordoned = await cli(['run', '-v', 'pinned:/p', image, 'true']);
    assert.equal(cordoned.code, 1);
    assert.match(cordoned.stderr, /^error: failed to run container ".*": no node can take it: 0\/2 nodes: volume "pinned" is on node "node-2" which is cordoned$/m);
    assert.equal((await cli(['node', 'uncordon', 'node-2'])).code, 0);

    await cluster?.agents[1]?.stop();
    await waitFor('node-2 to be NotReady', async () => {
      const r = await cli(['get', 'nodes', '-o', 'json']);
      return r.code === 0 && r.stdout.includes('NODE_STATE_NOT_READY');
    }, 60_000, 500);
    const down = await cli(['run', '-v', 'pinned:/p', image, 'true']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /no node can take it: 0\/2 nodes: volume "pinned" is on node "node-2" which is NotReady$/m);
    // A new volume still lands on the Ready node.
    const fresh = await cli(['run', '--rm', '-v', 'other:/o', image, 'true']);
    assert.equal(fresh.code, 0, fresh.stderr);
    const inspect = await cli(['volume', 'inspect', 'other']);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal((JSON.parse(inspect.stdout) as Array<{ Node: string }>)[0]?.Node, 'node-1');
  });
});
