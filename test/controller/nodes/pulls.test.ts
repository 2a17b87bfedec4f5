import assert from 'node:assert/strict';
import { MAX_PULL_BYTES, NatsPullProgress, PullWatchers, parsePullProgress } from '../../../controller/nodes/index.js';
import { pullSubject } from '../../../lib/index.js';
import { LayerPhase, PullProgress } from '../../../proto/gen/berth/v1/types.js';
import { deliverOverNats } from './over-nats.js';

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

  it('delivers accepted messages and counts dropped ones over real NATS', async function () {
    this.timeout(30_000);
    const r = await deliverOverNats<PullProgress>((servers, deliver) => new NatsPullProgress({ servers, deliver: (p) => deliver(p, Date.now()) }), [
      [pullSubject('n1'), encode(progress({ finished: true, digest: 'sha256:x' }))],
      [pullSubject('n1'), encode(progress({ node: 'n9' }))],
    ], { accepted: 1, dropped: 1 });
    assert.equal(r.got.length, 1);
    assert.equal(r.got[0]?.finished, true);
    assert.equal(r.dropped, 1);
  });
});
