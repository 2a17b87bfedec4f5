import assert from 'node:assert/strict';
import { PullProgressThrottle } from '../../../agent/status/index.js';
import type { PullProgress } from '../../../proto/gen/berth/v1/types.js';

function msg(n: number, finished = false): PullProgress {
  return { node: 'n', reference: 'r', layers: [{ digest: 'd', phase: 2, doneBytes: n, totalBytes: 100 }], finished, error: '', digest: finished ? 'sha256:x' : '' };
}

describe('PullProgressThrottle', () => {
  it('passes at most one message per interval, keeps the latest waiting one and always the final one', async () => {
    const sent: PullProgress[] = [];
    const t = new PullProgressThrottle((p) => sent.push(p), 60_000);
    for (let i = 0; i < 50; i++) t.push(msg(i));
    assert.deepEqual(sent.map((p) => p.layers[0]?.doneBytes), [0]);
    t.push(msg(100, true));
    assert.deepEqual(sent.map((p) => [p.layers[0]?.doneBytes, p.finished]), [[0, false], [100, true]]);
  });

  it('sends the message that waited when the interval ends', async () => {
    const sent: PullProgress[] = [];
    const t = new PullProgressThrottle((p) => sent.push(p), 50);
    t.push(msg(1));
    t.push(msg(2));
    t.push(msg(3));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(sent.map((p) => p.layers[0]?.doneBytes), [1, 3]);
  });
});
