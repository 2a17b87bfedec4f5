import assert from 'node:assert/strict';
import { startRegistryWithImages, tailLog, waitFor, type RegistryWithImages } from '../harness/index.js';
import { startProxy, type Proxy } from '../agent/images/proxy.js';
import { startCluster, type TestCluster } from './cluster.js';

interface ImageJson { reference: string; digest: string; node: string }
interface RemovalJson {
  node: string;
  images: ImageJson[];
  missing: string[];
  blobsDeleted: number;
  snapshotsDeleted: number;
  bytesFreed: number;
  error: string;
}

describe('berth rmi, berth image prune and berth search (real registry, controller and agents)', function () {
  this.timeout(180_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let proxy: Proxy | undefined;
  let busybox = '';
  let whalesay = '';

  before(async () => {
    reg = await startRegistryWithImages(['busybox', 'whalesay']);
    busybox = reg.images['busybox']?.reference ?? '';
    whalesay = reg.images['whalesay']?.reference ?? '';
    assert.ok(busybox && whalesay, 'both images were pushed');
    cluster = await startCluster();
    const agents = [cluster.startAgent('rm-a'), cluster.startAgent('rm-b')];
    const c = cluster;
    await waitFor('both agents Ready', async () => {
      for (const a of agents) if (a.exited()) throw new Error(`agent exited early:\n${tailLog(a)}`);
      const r = await c.cli(['get', 'nodes']);
      return (r.stdout.match(/\bReady\b/g) ?? []).length === 2;
    }, 60_000, 500);
  });

  after(async () => {
    await proxy?.stop();
    await cluster?.stop();
    await reg?.stop();
  });

  function cli(args: string[], stdin?: string): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args, stdin === undefined ? {} : { stdin });
  }

  async function images(): Promise<ImageJson[]> {
    const r = await cli(['images', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ImageJson[];
  }

  async function where(ref: string): Promise<string[]> {
    return (await images()).filter((i) => i.reference === ref).map((i) => i.node).sort();
  }

  async function pull(ref: string): Promise<void> {
    const r = await cli(['pull', ref]);
    assert.equal(r.code, 0, r.stderr);
  }

  it('refuses an unknown image and an image in use, removing nothing, then removes per node with -f and --node', async () => {
    await pull(busybox);
    assert.deepEqual(await where(busybox), ['rm-a', 'rm-b']);

    const host = reg?.registry.host ?? '';
    const unknown = await cli(['rmi', `${host}/nothing-here:1`, busybox]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, new RegExp(`image "${host.replace(/\./g, '\\.')}/nothing-here:1" not found on any Ready node \\(2 asked\\).*nothing was removed`));
    assert.deepEqual(await where(busybox), ['rm-a', 'rm-b'], 'the known image in the same call stays');
    const bad = await cli(['rmi', 'sha256:xyz']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /references: invalid image digest "sha256:xyz": expected "sha256:" and 12 to 64 lowercase hex digits/);

    const run = await cli(['run', '-d', '--name', 'img-user', busybox, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    const ps = JSON.parse((await cli(['ps', '--format', 'json'])).stdout) as { name: string; id: string; node: string }[];
    const user = ps.find((p) => p.name === 'img-user');
    assert.ok(user, 'the container is listed');
    const busyNode = user.node;
    const freeNode = busyNode === 'rm-a' ? 'rm-b' : 'rm-a';

    const refused = await cli(['rmi', busybox]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`node "${busyNode}": failed to remove image ".*busybox:latest": in use by container "${user.id}" \\(remove it first, or use --force\\); nothing was removed`));
    assert.deepEqual(await where(busybox), ['rm-a', 'rm-b'], 'nothing removed on the free node either');

    const one = await cli(['rmi', busybox, '--node', freeNode]);
    assert.equal(one.code, 0, one.stderr);
    assert.ok(one.stdout.includes(`${freeNode}: Untagged: ${busybox} (`), one.stdout);
    assert.match(one.stdout, new RegExp(`^${freeNode}: deleted 3 blobs and 1 layer snapshot, freed [0-9.]+[KM]i$`, 'm'));
    assert.deepEqual(await where(busybox), [busyNode]);

    const forced = await cli(['rmi', '-f', busybox, '-o', 'json']);
    assert.equal(forced.code, 0, forced.stderr);
    const res = JSON.parse(forced.stdout) as RemovalJson[];
    assert.deepEqual(res.map((r) => [r.node, r.images.map((i) => i.reference), r.error]), [[busyNode, [busybox], '']]);
    // The running container keeps its unpacked layer; the blobs (manifest, config, compressed layer) go.
    assert.deepEqual([res[0]?.blobsDeleted, res[0]?.snapshotsDeleted], [3, 0]);
    assert.deepEqual(await where(busybox), []);
    const still = JSON.parse((await cli(['ps', '--format', 'json'])).stdout) as { name: string; status?: { state?: string } }[];
    assert.equal(still.find((p) => p.name === 'img-user')?.status?.state, 'CONTAINER_STATE_RUNNING');

    const rm = await cli(['rm', '-f', 'img-user']);
    assert.equal(rm.code, 0, rm.stderr);
    // Now the layer is unused: prune frees it on that node.
    const pruned = await cli(['image', 'prune', '-f', '-o', 'json']);
    assert.equal(pruned.code, 0, pruned.stderr);
    const p = JSON.parse(pruned.stdout) as { nodes: RemovalJson[]; bytesFreed: number };
    const onBusy = p.nodes.find((n) => n.node === busyNode);
    assert.deepEqual([onBusy?.blobsDeleted, onBusy?.snapshotsDeleted], [0, 1]);
    assert.ok(p.bytesFreed > 0);
  });

  it('keeps a layer another image shares, by digest prefix, through the Docker-style aliases', async () => {
    await pull(busybox);
    await pull(whalesay);
    const ls = await cli(['image', 'ls', '--node', 'rm-a']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /whalesay\s+latest/);
    const whaleDigest = (await images()).find((i) => i.reference === whalesay)?.digest ?? '';
    const rm = await cli(['image', 'rm', whaleDigest.slice(7, 19), '--node', 'rm-a']);
    assert.equal(rm.code, 0, rm.stderr);
    // whalesay's own layer goes; the busybox layer it is built on stays for busybox.
    assert.match(rm.stdout, /^rm-a: deleted 3 blobs and 1 layer snapshot, freed [0-9.]+Mi$/m);
    assert.deepEqual(await where(whalesay), ['rm-b']);
    assert.deepEqual(await where(busybox), ['rm-a', 'rm-b']);

    const table = await cli(['image', 'prune', '-a', '-f']);
    assert.equal(table.code, 0, table.stderr);
    assert.ok(table.stdout.includes(`rm-b: Deleted image: ${whalesay} (`), table.stdout);
    assert.ok(table.stdout.includes(`rm-a: Deleted image: ${busybox} (`), table.stdout);
    assert.match(table.stdout, /^Total reclaimed space: [0-9.]+Mi$/m);
    assert.deepEqual(await images(), []);

    const again = await cli(['image', 'prune', '-f']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^rm-a: deleted 0 blobs and 0 layer snapshots, freed 0$/m);
    assert.match(again.stdout, /^Total reclaimed space: 0$/m);
  });

  it('asks before pruning and stops unless the answer is yes', async () => {
    await pull(busybox);
    const no = await cli(['image', 'prune', '-a'], 'n\n');
    assert.equal(no.code, 1);
    assert.match(no.stderr, /Are you sure you want to continue\? \[y\/N\] .*prune not confirmed; nothing was removed/s);
    assert.deepEqual(await where(busybox), ['rm-a', 'rm-b']);
    const yes = await cli(['image', 'prune', '-a', '--node', 'rm-b'], 'y\n');
    assert.equal(yes.code, 0, yes.stderr);
    assert.deepEqual(await where(busybox), ['rm-a'], yes.stdout + yes.stderr);
    const unknownNode = await cli(['image', 'prune', '-f', '--node', 'nope']);
    assert.equal(unknownNode.code, 1);
    assert.match(unknownNode.stderr, /node "nope" not found/);
  });

  it('searches the registry catalog with tags, with --limit and -o json, and says when a registry refuses its catalog', async () => {
    const host = reg?.registry.host ?? '';
    const found = await cli(['search', 'busy', '--registry', host]);
    assert.equal(found.code, 0, found.stderr);
    assert.match(found.stdout, /^NAME\s+TAGS$/m);
    assert.match(found.stdout, new RegExp(`^${host.replace(/\./g, '\\.')}/busybox\\s+latest$`, 'm'));
    assert.doesNotMatch(found.stdout, /whalesay/);

    const json = await cli(['search', '', '--registry', host, '--limit', '1', '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), [{ registry: host, repository: 'busybox', tags: ['latest'] }]);

    const none = await cli(['search', 'no-such-thing', '--registry', host]);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stderr, /no repository matches "no-such-thing"/);

    proxy = await startProxy(reg?.registry.url ?? '', {
      transform: (req) => (req.path.startsWith('/v2/_catalog')
        ? { status: 404, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}') }
        : undefined),
    });
    const refused = await cli(['search', 'busy', '--registry', proxy.host]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /failed to search registry "127\.0\.0\.1:\d+": it does not offer its catalog to us \(GET \/v2\/_catalog answered 404/);

    const badHost = await cli(['search', 'x', '--registry', 'evil/path']);
    assert.equal(badHost.code, 1);
    assert.match(badHost.stderr, /registry: expected a registry host such as "registry\.example\.com" or "127\.0\.0\.1:5000", got "evil\/path"/);
    const badLimit = await cli(['search', 'x', '--limit', '500']);
    assert.equal(badLimit.code, 2);
    assert.match(badLimit.stderr, /--limit: expected a whole number from 1 to 100, got "500"/);
  });

  it('documents every verb with --help', async () => {
    for (const args of [['rmi'], ['search'], ['image'], ['image', 'ls'], ['image', 'pull'], ['image', 'rm'], ['image', 'prune']]) {
      const r = await cli([...args, '--help']);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /Examples:/, args.join(' '));
    }
    const usage = await cli(['rmi']);
    assert.equal(usage.code, 2);
  });
});
