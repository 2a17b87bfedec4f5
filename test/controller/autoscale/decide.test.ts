import assert from 'node:assert/strict';
import { AutoscaleInputError, EMPTY_HISTORY, decide, type AutoscaleHistory, type AutoscaleObservation, type AutoscalePolicy } from '../../../controller/autoscale/index.js';

const NOW = 1_800_000_000_000;
const s = (seconds: number): number => NOW - seconds * 1000;

const BASE: AutoscalePolicy = {
  min: 1,
  max: 20,
  metric: 'requests',
  target: 200,
  tolerance: 0.1,
  scaleUp: { stabilizationSeconds: 0, maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 },
  scaleDown: { stabilizationSeconds: 60, maxStepPercent: 50, maxStepReplicas: 0, periodSeconds: 15 },
};

const ZERO: AutoscalePolicy = { ...BASE, min: 0, scaleDown: { ...BASE.scaleDown, stabilizationSeconds: 0 }, scaleToZero: { idleSeconds: 120 } };

function obs(o: Partial<AutoscaleObservation> & Pick<AutoscaleObservation, 'current' | 'total'>): AutoscaleObservation {
  return { nowMs: NOW, ready: o.current, starting: 0, lastActiveMs: NOW, ...o };
}

interface Row {
  name: string;
  policy?: AutoscalePolicy;
  observation: AutoscaleObservation;
  history?: AutoscaleHistory;
  desired: number;
  recommendation?: number;
  /** Substrings the reason must contain. */
  reason?: string[];
  limitedBy?: RegExp;
}

function check(rows: Row[]): void {
  for (const row of rows) {
    it(row.name, () => {
      const d = decide('web', row.policy ?? BASE, row.observation, row.history ?? EMPTY_HISTORY);
      assert.equal(d.desired, row.desired, d.reason);
      assert.equal(d.changed, row.desired !== row.observation.current);
      if (row.recommendation !== undefined) assert.equal(d.recommendation, row.recommendation);
      for (const part of row.reason ?? []) assert.ok(d.reason.includes(part), `reason "${d.reason}" lacks "${part}"`);
      if (row.limitedBy) assert.match(d.limitedBy ?? '', row.limitedBy);
      else if (row.limitedBy === undefined && d.limitedBy !== undefined && row.reason === undefined) {
        // Rows that don't mention a limit expect none.
        assert.fail(`unexpected limit: ${d.limitedBy}`);
      }
    });
  }
}

describe('autoscale decide', () => {
  describe('tolerance', () => {
    check([
      { name: 'keeps the count when the metric is within the tolerance above target', observation: obs({ current: 3, total: 3 * 210 }), desired: 3, reason: ['web stays at 3', 'within the 10% tolerance'] },
      { name: 'keeps the count when the metric is within the tolerance below target', observation: obs({ current: 3, total: 3 * 182 }), desired: 3, reason: ['within the 10% tolerance'] },
      { name: 'scales up when the metric is just outside the tolerance', observation: obs({ current: 3, total: 3 * 223 }), desired: 4, recommendation: 4 },
      { name: 'keeps the count at exactly target', observation: obs({ current: 5, total: 1000 }), desired: 5 },
    ]);
  });

  describe('scale up and its step limits', () => {
    check([
      {
        name: 'adds at most maxStepReplicas when that is larger than the percentage',
        observation: obs({ current: 3, total: 1450 }),
        desired: 7,
        recommendation: 8,
        reason: ['scaled web 3 -> 7: requests 1450/s over 3 ready replicas, target 200/s'],
        limitedBy: /scale-up step limit: at most 4 added per 5s/,
      },
      {
        name: 'adds up to maxStepPercent when that is larger than the count',
        observation: obs({ current: 10, total: 10 * 200 * 1.8 }),
        desired: 18,
        recommendation: 18,
      },
      {
        name: 'counts replicas already added in the period against the step limit',
        observation: obs({ current: 7, total: 4000 }),
        history: { recommendations: [], changes: [{ atMs: s(2), from: 3, to: 7 }] },
        desired: 7,
        limitedBy: /at most 4 added per 5s/,
      },
      {
        name: 'allows a new step once the period has passed',
        observation: obs({ current: 7, total: 4000 }),
        history: { recommendations: [], changes: [{ atMs: s(6), from: 3, to: 7 }] },
        desired: 14,
        limitedBy: /at most 7 added per 5s/,
      },
      {
        name: 'uses the lowest recommendation in a scale-up stabilization window',
        policy: { ...BASE, scaleUp: { ...BASE.scaleUp, stabilizationSeconds: 30 } },
        observation: obs({ current: 3, total: 1600 }),
        history: { recommendations: [{ atMs: s(20), replicas: 5 }, { atMs: s(40), replicas: 3 }], changes: [] },
        desired: 5,
        limitedBy: /scale-up stabilization: lowest recommendation in the last 30s was 5/,
      },
    ]);
  });

  describe('scale down, its stabilization window and step limits', () => {
    check([
      {
        name: 'holds at the highest recommendation in the scale-down window',
        observation: obs({ current: 6, total: 400 }),
        history: { recommendations: [{ atMs: s(30), replicas: 6 }, { atMs: s(10), replicas: 4 }], changes: [], sinceMs: s(600) },
        desired: 6,
        recommendation: 2,
        limitedBy: /highest recommendation in the last 60s was 6/,
      },
      {
        name: 'goes down once higher recommendations leave the window',
        observation: obs({ current: 6, total: 400 }),
        history: { recommendations: [{ atMs: s(70), replicas: 6 }, { atMs: s(10), replicas: 3 }], changes: [], sinceMs: s(600) },
        desired: 3,
        reason: ['scaled web 6 -> 3', 'requests 400/s over 6 ready replicas'],
        limitedBy: /highest recommendation in the last 60s was 3/,
      },
      {
        name: 'holds the count until a new history has seen a whole scale-down window',
        observation: obs({ current: 6, total: 400 }),
        history: { recommendations: [], changes: [], sinceMs: s(20) },
        desired: 6,
        recommendation: 2,
        limitedBy: /scale-down stabilization: 20s of the 60s window seen so far/,
      },
      {
        name: 'holds the count on the very first decision of a new history',
        observation: obs({ current: 6, total: 400 }),
        desired: 6,
        limitedBy: /0s of the 60s window seen so far/,
      },
      {
        name: 'removes at most maxStepPercent of the replicas per period',
        policy: { ...BASE, scaleDown: { ...BASE.scaleDown, stabilizationSeconds: 0 } },
        observation: obs({ current: 10, total: 200 }),
        desired: 5,
        limitedBy: /scale-down step limit: at most 5 removed per 15s/,
      },
      {
        name: 'counts replicas already removed in the period against the step limit',
        policy: { ...BASE, scaleDown: { ...BASE.scaleDown, stabilizationSeconds: 0 } },
        observation: obs({ current: 5, total: 200 }),
        history: { recommendations: [], changes: [{ atMs: s(5), from: 10, to: 5 }] },
        desired: 5,
        limitedBy: /at most 5 removed per 15s/,
      },
    ]);
  });

  describe('min and max', () => {
    check([
      { name: 'never goes above max', policy: { ...BASE, max: 5 }, observation: obs({ current: 3, total: 2000 }), desired: 5, limitedBy: /^max 5$/ },
      { name: 'never goes below min', policy: { ...BASE, min: 2, scaleDown: { ...BASE.scaleDown, stabilizationSeconds: 0 } }, observation: obs({ current: 2, total: 0 }), desired: 2, limitedBy: /^min 2$/ },
      { name: 'raises a count below min at once', policy: { ...BASE, min: 3 }, observation: obs({ current: 1, total: 100 }), desired: 3, limitedBy: /^min 3$/ },
      { name: 'lowers a count above max at once', policy: { ...BASE, max: 4 }, observation: obs({ current: 6, total: 6 * 200 }), desired: 4, limitedBy: /^max 4$/ },
    ]);
  });

  describe('starting and unready replicas', () => {
    check([
      { name: 'does not count starting replicas as idle when load is low', policy: { ...BASE, scaleDown: { ...BASE.scaleDown, stabilizationSeconds: 0 } }, observation: obs({ current: 4, ready: 1, starting: 3, total: 50 }), desired: 4, recommendation: 4 },
      { name: 'scales down idle ready replicas when none are starting', policy: { ...BASE, scaleDown: { ...BASE.scaleDown, stabilizationSeconds: 0 } }, observation: obs({ current: 4, ready: 4, total: 50 }), desired: 2, recommendation: 1, limitedBy: /at most 2 removed per 15s/ },
      { name: 'does not add past replicas that are still starting', observation: obs({ current: 4, ready: 1, starting: 3, total: 300 }), desired: 4, recommendation: 4 },
      { name: 'adds when even the starting replicas will not be enough', observation: obs({ current: 4, ready: 1, starting: 3, total: 1000 }), desired: 5, recommendation: 5 },
      { name: 'keeps the count when no replica is ready to measure', observation: obs({ current: 3, ready: 0, starting: 3, total: 0 }), desired: 3, reason: ['no ready replica to measure (3 starting)'] },
    ]);
  });

  describe('scale to zero and back', () => {
    check([
      { name: 'goes to zero after idleSeconds without requests', policy: ZERO, observation: obs({ current: 1, total: 0, lastActiveMs: s(130) }), desired: 0, reason: ['scaled web 1 -> 0: no requests for 130s (scaleToZero.idleSeconds 120)'] },
      { name: 'stays at one before idleSeconds have passed', policy: ZERO, observation: obs({ current: 1, total: 0, lastActiveMs: s(60) }), desired: 1 },
      { name: 'does not go to zero while a replica is starting', policy: ZERO, observation: obs({ current: 2, ready: 1, starting: 1, total: 0, lastActiveMs: s(300) }), desired: 1 },
      { name: 'does not go to zero on the cpu metric', policy: { ...ZERO, metric: 'cpu', target: 60 }, observation: obs({ current: 1, total: 0, lastActiveMs: s(300) }), desired: 1 },
      { name: 'does not go to zero when min is above zero', policy: { ...ZERO, min: 1 }, observation: obs({ current: 1, total: 0, lastActiveMs: s(300) }), desired: 1 },
      { name: 'stays at zero without a waiting connection', policy: ZERO, observation: obs({ current: 0, ready: 0, total: 0, lastActiveMs: s(300) }), desired: 0 },
      {
        name: 'starts one replica at once for a waiting connection, past windows and step limits',
        policy: { ...ZERO, scaleUp: { ...ZERO.scaleUp, stabilizationSeconds: 30 } },
        observation: obs({ current: 0, ready: 0, total: 0, activation: true }),
        history: { recommendations: [{ atMs: s(5), replicas: 0 }], changes: [{ atMs: s(1), from: 1, to: 0 }] },
        desired: 1,
        reason: ['scaled web 0 -> 1: connection held at the service address'],
      },
    ]);
  });

  describe('reasons per metric', () => {
    check([
      { name: 'shows the average cpu for the cpu metric', policy: { ...BASE, metric: 'cpu', target: 60 }, observation: obs({ current: 2, total: 2 * 90 }), desired: 3, reason: ['scaled web 2 -> 3: cpu 90% of the requested cpu on average over 2 ready replicas, target 60%'] },
      { name: 'shows open connections for the connections metric', policy: { ...BASE, metric: 'connections', target: 10 }, observation: obs({ current: 1, total: 25 }), desired: 3, reason: ['connections 25 open over 1 ready replica, target 10 open'] },
    ]);
  });

  it('returns a pruned history with this recommendation and change for the next call', () => {
    const history: AutoscaleHistory = {
      recommendations: [{ atMs: s(120), replicas: 9 }, { atMs: s(30), replicas: 4 }],
      changes: [{ atMs: s(40), from: 1, to: 3 }, { atMs: s(3), from: 3, to: 4 }],
    };
    const d = decide('web', BASE, obs({ current: 4, total: 1500 }), history);
    // 8 recommended; 3 at the period's start (one added 3 s ago) + at most 4 -> 7.
    assert.equal(d.desired, 7);
    assert.deepEqual(d.history.recommendations, [{ atMs: s(30), replicas: 4 }, { atMs: NOW, replicas: 8 }]);
    assert.deepEqual(d.history.changes, [{ atMs: s(3), from: 3, to: 4 }, { atMs: NOW, from: 4, to: 7 }]);
    assert.equal(d.history.sinceMs, NOW, 'a history without a start begins now');
  });

  it('rejects nonsense input naming the field', () => {
    assert.throws(() => decide('web', BASE, obs({ current: 3, total: NaN }), EMPTY_HISTORY), (e: unknown) => e instanceof AutoscaleInputError && e.field === 'observation.total' && /expected a finite number >= 0/.test(e.message));
    assert.throws(() => decide('web', { ...BASE, min: 5, max: 3 }, obs({ current: 3, total: 0 }), EMPTY_HISTORY), (e: unknown) => e instanceof AutoscaleInputError && e.field === 'policy.max');
    assert.throws(() => decide('web', { ...BASE, target: 0 }, obs({ current: 3, total: 0 }), EMPTY_HISTORY), (e: unknown) => e instanceof AutoscaleInputError && e.field === 'policy.target');
    assert.throws(() => decide('web', BASE, obs({ current: -1, total: 0 }), EMPTY_HISTORY), (e: unknown) => e instanceof AutoscaleInputError && e.field === 'observation.current');
  });
});
