import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { ImageServiceClient, NodeServiceClient } from '../../../proto/gen/berth/v1/controller.js';
import { LayerPhase, NodeState, type ImageRecord, type PullProgress } from '../../../proto/gen/berth/v1/types.js';
import { startRegistryWithImages, waitFor } from '../../harness/index.js';
import { startCluster, type TestCluster } from '../../cli/cluster.js';

type Registry = Awaited<ReturnType<typeof startRegistryWithImages>>;

function pull(client: ImageServiceClient, reference: string, node = ''): Promise<{ messages: PullProgress[]; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const messages: PullProgress[] = [];
    const stream = client.pull({ reference, node });
    stream.on('data', (m: PullProgress) => messages.push(m));
    stream.on('error', (error: grpc.ServiceError) => resolve({ messages, error }));
    stream.on('end', () => resolve({ messages }));
  });
}

function list(client: ImageServiceClient, node = ''): Promise<{ images: ImageRecord[]; unreachable: string[] }> {
  return new Promise((resolve, reject) => client.list({ node }, (err, res) => (err ? reject(err) : resolve(res))));
}

describe('ImageService (controller)', function () {
  this.timeout(120_000);
  let cluster: TestCluster | undefined;
  let registry: Registry | undefined;
  let images: ImageServiceClient | undefined;
  let nodes: NodeServiceClient | undefined;

  before(async () => {
    registry = await startRegistryWithImages(['busybox']);
    cluster = await startCluster();
    cluster.startAgent('img-a');
    cluster.startAgent('img-b');
    images = new ImageServiceClient(cluster.address, grpc.credentials.createInsecure());
    nodes = new NodeServiceClient(cluster.address, grpc.credentials.createInsecure());
    await waitFor('both agents Ready', () => new Promise<boolean>((resolve) => {
      nodes?.list({}, (err, res) => resolve(!err && res.nodes.filter((n) => n.status?.state === NodeState.NODE_STATE_READY).length === 2));
    }), 30_000);
  });

  after(async () => {
    images?.close();
    nodes?.close();
    await cluster?.stop();
    await registry?.stop();
  });

  it('pulls on every Ready node with per-layer progress, then lists the image once per node', async () => {
    const ref = registry?.images['busybox']?.reference ?? '';
    const r = await pull(images as ImageServiceClient, ref);
    assert.equal(r.error, undefined);
    const finals = r.messages.filter((m) => m.finished);
    assert.deepEqual(finals.map((m) => m.node).sort(), ['img-a', 'img-b']);
    for (const f of finals) {
      assert.equal(f.error, '');
      assert.equal(f.digest, registry?.images['busybox']?.digest);
    }
    const layerPhases = new Set(r.messages.flatMap((m) => m.layers.map((l) => l.phase)));
    assert.ok(layerPhases.has(LayerPhase.LAYER_PHASE_DONE), 'layers reach done');

    const listed = await list(images as ImageServiceClient);
    assert.deepEqual(listed.unreachable, []);
    const mine = listed.images.filter((i) => i.digest === registry?.images['busybox']?.digest);
    assert.deepEqual(mine.map((i) => i.node).sort(), ['img-a', 'img-b']);
    assert.ok(mine.every((i) => i.sizeBytes > 0 && i.repository.endsWith('busybox')));

    const again = await pull(images as ImageServiceClient, ref, 'img-a');
    const phases = again.messages.flatMap((m) => m.layers.map((l) => l.phase));
    assert.ok(phases.includes(LayerPhase.LAYER_PHASE_ALREADY_EXISTS), 'a second pull finds the layers present');
    assert.deepEqual(again.messages.filter((m) => m.finished).map((m) => m.node), ['img-a']);
  });

  it('reports a missing image as that node\'s error and rejects bad input by field', async () => {
    const host = registry?.registry.host ?? '';
    const r = await pull(images as ImageServiceClient, `${host}/no-such-image:latest`, 'img-b');
    assert.equal(r.error, undefined);
    const final = r.messages.find((m) => m.finished);
    assert.equal(final?.node, 'img-b');
    assert.match(final?.error ?? '', /no-such-image/);

    const bad = await pull(images as ImageServiceClient, 'Not A Reference');
    assert.equal(bad.error?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad.error?.details ?? '', /^reference: /);

    const unknown = await pull(images as ImageServiceClient, `${host}/busybox:latest`, 'no-such-node');
    assert.equal(unknown.error?.code, grpc.status.NOT_FOUND);
    assert.match(unknown.error?.details ?? '', /node "no-such-node" not found/);
  });

  it('rejects bad Remove, Prune and Search requests by field and changes nothing', async () => {
    const call = <Req, Res>(fn: (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<grpc.ServiceError | undefined> =>
      new Promise((resolve) => fn.call(images, req, (err) => resolve(err ?? undefined)));
    const c = images as ImageServiceClient;
    const before = (await list(c)).images.length;
    const none = await call(c.remove, { references: [], node: '', force: false });
    assert.equal(none?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(none?.details ?? '', /^references: expected at least one image reference or digest, got none/);
    const bad = await call(c.remove, { references: ['Not A Reference'], node: '', force: false });
    assert.equal(bad?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad?.details ?? '', /^references: /);
    const missing = await call(c.remove, { references: [`${registry?.registry.host ?? ''}/no-such-image:1`], node: '', force: false });
    assert.equal(missing?.code, grpc.status.NOT_FOUND);
    assert.match(missing?.details ?? '', /image ".*no-such-image:1" not found on any Ready node \(2 asked\)/);
    const noNode = await call(c.prune, { all: true, node: 'no-such-node' });
    assert.equal(noNode?.code, grpc.status.NOT_FOUND);
    const limit = await call(c.search, { term: 'x', registry: registry?.registry.host ?? '', limit: 101 });
    assert.equal(limit?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(limit?.details ?? '', /^limit: expected 1 to 100, got 101/);
    const host = await call(c.search, { term: 'x', registry: 'http://evil', limit: 0 });
    assert.equal(host?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(host?.details ?? '', /^registry: expected a registry host/);
    assert.equal((await list(c)).images.length, before);
  });
});
