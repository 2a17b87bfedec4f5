import assert from 'node:assert/strict';
import { diffLines, unifiedDiff } from '../../cli/diff.js';
import { parseBool, parseDuration, progressLine, rolledBackMessage } from '../../cli/rollout.js';
import { UsageError } from '../../cli/context.js';
import { cliInProcess } from './helpers.js';
import type { RolloutStatusResponse } from '../../proto/gen/berth/v1/controller.js';

function progress(patch: Partial<RolloutStatusResponse>): RolloutStatusResponse {
  return {
    workload: 'web', revision: 4, cause: 'apply', desired: 3, updated: 0, updatedReady: 0, available: 0, old: 0, pending: 0, pendingReason: '',
    complete: false, rolledBackRevision: 0, rollbackReason: '', notReady: [], ...patch,
  };
}

describe('cli/diff', () => {
  it('keeps common lines and marks removed and added ones when two texts differ', () => {
    assert.deepEqual(diffLines(['a', 'b', 'c'], ['a', 'x', 'c', 'd']), [
      { kind: ' ', line: 'a' }, { kind: '-', line: 'b' }, { kind: '+', line: 'x' }, { kind: ' ', line: 'c' }, { kind: '+', line: 'd' },
    ]);
  });

  it('prints hunks with three lines of context and line ranges when a spec changed', () => {
    const before = ['replicas: 2', 'image: web:1', 'a: 1', 'b: 2', 'c: 3', 'd: 4', 'e: 5', 'f: 6', 'g: 7', 'h: 8', 'tail: 1'].join('\n') + '\n';
    const after = before.replace('replicas: 2', 'replicas: 3').replace('tail: 1', 'tail: 2');
    assert.equal(unifiedDiff(before, after, { from: 'old', to: 'new' }), [
      '--- old', '+++ new',
      '@@ -1,4 +1,4 @@', '-replicas: 2', '+replicas: 3', ' image: web:1', ' a: 1', ' b: 2',
      '@@ -8,4 +8,4 @@', ' f: 6', ' g: 7', ' h: 8', '-tail: 1', '+tail: 2', '',
    ].join('\n'));
    assert.equal(unifiedDiff(before, before, { from: 'old', to: 'new' }), '');
  });

  it('shows every line as added for a new workload and colors lines for a terminal', () => {
    const text = unifiedDiff('', 'replicas: 1\nimage: web:1\n', { from: '/dev/null', to: 'new', color: true });
    assert.equal(text, '\u001b[1m--- /dev/null\u001b[0m\n\u001b[1m+++ new\u001b[0m\n\u001b[36m@@ -0,0 +1,2 @@\u001b[0m\n\u001b[32m+replicas: 1\u001b[0m\n\u001b[32m+image: web:1\u001b[0m\n');
  });
});

describe('cli/rollout', () => {
  it('parses durations with units and rejects anything else', () => {
    assert.deepEqual(['250ms', '30s', '5m', '1h', '90', '0'].map((d) => parseDuration(d, '--timeout')), [250, 30_000, 300_000, 3_600_000, 90_000, 0]);
    for (const bad of ['soon', '-1s', '5d', '200h', '']) assert.throws(() => parseDuration(bad, '--timeout'), (e: unknown) => e instanceof UsageError && /^--timeout: expected a duration such as 30s, 5m or 1h/.test(e.message), bad);
  });

  it('reads --watch values and rejects others', () => {
    assert.deepEqual([parseBool(undefined, '-w'), parseBool(true, '-w'), parseBool('false', '-w'), parseBool('1', '-w')], [true, true, false, true]);
    assert.throws(() => parseBool('maybe', '--watch'), /--watch: expected true or false, got "maybe"/);
  });

  it('takes the name after -w as the workload, and --no-watch, and asks for a missing name', async () => {
    const noName = await cliInProcess(['rollout', 'status']);
    assert.deepEqual([noName.code, noName.stderr], [2, 'error: rollout status: expected a workload name (berth rollout status NAME)\n']);
    // Both reach the controller (none listens on this port), so the name was taken.
    for (const args of [['-w', 'web'], ['web', '--no-watch'], ['web', '--watch=false']]) {
      const r = await cliInProcess(['--controller', '127.0.0.1:1', 'rollout', 'status', ...args]);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /^error: failed to reach the controller at 127\.0\.0\.1:1/, args.join(' '));
    }
  });

  it('says what a rollout waits for', () => {
    assert.equal(progressLine(progress({ updated: 1, updatedReady: 0, available: 3, old: 3 })),
      'revision 4: 1 of 3 updated, 0 ready, 3 available; waiting for 3 old replicas to be replaced; waiting for 2 new replicas to be placed; waiting for 1 updated replica to be ready');
    assert.equal(progressLine(progress({ updated: 3, updatedReady: 3, available: 3, old: 1 })), 'revision 4: 3 of 3 updated, 3 ready, 3 available; waiting for 1 old replica to be replaced');
    assert.equal(progressLine(progress({ pending: 3, pendingReason: '3 pending: 0/2 nodes: 2 insufficient memory' })),
      'revision 4: 0 of 3 updated, 0 ready, 0 available; 3 pending (0/2 nodes: 2 insufficient memory)');
    assert.equal(progressLine(progress({ updated: 3, updatedReady: 3, available: 3, complete: true })), 'workload "web" successfully rolled out (revision 4, 3 replicas ready)');
  });

  it('explains a rollback with the failed revision and its reason', () => {
    const p = progress({ revision: 5, cause: 'rollback to 3: revision 4 failed: "web-1-abcde" restarted 3 times (Error)', rolledBackRevision: 4, rollbackReason: '"web-1-abcde" restarted 3 times (Error)' });
    assert.equal(rolledBackMessage(p), 'rollout of "web" revision 4 failed and was rolled back (now revision 5, rollback to 3): "web-1-abcde" restarted 3 times (Error)');
  });
});
