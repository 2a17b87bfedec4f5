import assert from 'node:assert/strict';
import { connect, type NatsConnection } from 'nats';
import { MAX_PULL_BYTES, NatsPullProgress, PullWatchers, parsePullProgress } from '../../../controller/nodes/index.js';
import { pullSubject } from '../../../lib/index.js';
import { LayerPhase, PullProgress } from '../../../proto/gen/berth/v1/types.js';
import { startNats, type Service } from '../../harness/index.js';

function progress(over: Partial<PullProgress> = {}): PullProgress {
  return {
    node: 'n1', reference: 'registry.local/busybox:1', finished: false, error: '', digest: '',
    layers: [{ digest: `sha256:${'a'.repeat(64)}`, phase: LayerPhase.LAYER_PHASE_DOWNLOADING, doneBytes: 10, totalBytes: 100 }],
    ...over,
  };
}

const encode = (p: PullProgress): Uint8Array => PullProgress.encode(p).finish();

describe('pull progress from agents', () => {
  it('accepts a well-formed message', () => {
    const p = parsePullProgress(pullSubject('n1'), encode(progress()));
    assert.ok(typeof p !== 'string', String(p));
    assert.equal(p.reference, 'registry.local/busybox:1');
  });

  for (const [what, subject, data] of [
    ['a node that is not the subject\'s', pullSubject('n1'), encode(progress({ node: 'n2' }))],
    ['a subject without a valid node', 'berth.v1.node.BAD_NODE.pull', encode(progress())],
    ['another kind of subject', 'berth.v1.node.n1.metrics', encode(progress())],
    ['bytes that do not decode', pullSubject('n1'), Uint8Array.from([0xff, 0xff, 0xff])],
    ['an oversized message', pullSubject('n1'), new Uint8Array(MAX_PULL_BYTES + 1)],
    ['too many layers', pullSubject('n1'), encode(progress({ layers: Array.from({ length: 1001 }, () => progress().layers[0]!) }))],
  ] as const) {
    it(`drops ${what}`, () => {
      assert.equal(typeof parsePullProgress(subject, data), 'string');
    });
  }

  it('gives each message to the watchers of its node and reference only, until they stop watching', () => {
    const w = new PullWatchers();
    const got: string[] = [];
    const stop = w.watch('n1', 'registry.local/busybox:1', (p) => got.push(`a:${p.node}`));
    w.watch('n2', 'registry.local/busybox:1', (p) => got.push(`b:${p.node}`));
    w.deliver(progress());
    w.deliver(progress({ reference: 'registry.local/other:1' }));
    w.deliver(progress({ node: 'n2' }));
    stop();
    w.deliver(progress());
    assert.deepEqual(got, ['a:n1', 'b:n2']);
  });

  describe('over real NATS', function () {
    this.timeout(20_000);
    let nats: Service | undefined;
    let nc: NatsConnection | undefined;
    let sub: NatsPullProgress | undefined;
    before(async () => {
      nats = await startNats();
      nc = await connect({ servers: nats.url });
    });
    after(async () => {
      await sub?.stop();
      await nc?.close();
      await nats?.stop();
    });

    it('delivers accepted messages and counts dropped ones', async () => {
      const got: PullProgress[] = [];
      sub = new NatsPullProgress({ servers: [nats!.url], deliver: (p) => got.push(p) });
      await sub.start();
      nc!.publish(pullSubject('n1'), encode(progress({ finished: true, digest: 'sha256:x' })));
      nc!.publish(pullSubject('n1'), encode(progress({ node: 'n9' })));
      await nc!.flush();
      for (let i = 0; i < 100 && (got.length < 1 || sub.dropped < 1); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(got.length, 1);
      assert.equal(got[0]?.finished, true);
      assert.equal(sub.dropped, 1);
    });
  });
});
