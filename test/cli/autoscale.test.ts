import assert from 'node:assert/strict';
import { autoscaleRequest } from '../../cli/autoscale.js';
import { UsageError } from '../../cli/context.js';

describe('berth autoscale flags', () => {
  it('builds a cpu policy with the file defaults', () => {
    const r = autoscaleRequest('web', { min: '2', max: '10', cpuPercent: '60' });
    assert.equal(r.off, false);
    assert.deepEqual({ min: r.autoscale?.min, max: r.autoscale?.max, metric: r.autoscale?.metric, target: r.autoscale?.target, tolerance: r.autoscale?.tolerance }, { min: 2, max: 10, metric: 'cpu', target: 60, tolerance: 0.1 });
    assert.equal(r.autoscale?.scaleDown?.stabilizationSeconds, 60);
  });

  it('starts a scale-to-zero policy at min 0 and reads durations', () => {
    const r = autoscaleRequest('api', { max: '20', requestsPerSecond: '200', scaleToZeroAfter: '2m', scaleDownWindow: '30s' });
    assert.equal(r.autoscale?.min, 0);
    assert.equal(r.autoscale?.metric, 'requests');
    assert.equal(r.autoscale?.scaleToZeroIdleSeconds, 120);
    assert.equal(r.autoscale?.scaleDown?.stabilizationSeconds, 30);
  });

  it('turns autoscaling off', () => {
    assert.deepEqual(autoscaleRequest('web', { off: true }), { name: 'web', off: true });
  });

  const bad: [string, Parameters<typeof autoscaleRequest>[1], RegExp][] = [
    ['no metric', { max: '3' }, /expected exactly one of --cpu-percent, --requests-per-second, --connections, got none/],
    ['two metrics', { max: '3', cpuPercent: '50', connections: '4' }, /got --cpu-percent, --connections/],
    ['no max', { cpuPercent: '50' }, /^--max: required/],
    ['a negative cpu target', { max: '3', cpuPercent: '-5' }, /^--cpu-percent: expected a number above 0 and at most 1000, got "-5"/],
    ['max below min', { min: '5', max: '3', cpuPercent: '50' }, /^--max: expected at least --min \(5\), got 3/],
    ['a bad duration', { max: '3', requestsPerSecond: '5', scaleToZeroAfter: '10 minutes' }, /^--scale-to-zero-after: expected a duration/],
    ['a tolerance of 2', { max: '3', cpuPercent: '50', tolerance: '2' }, /^--tolerance: expected a number from 0 to 0.9, got "2"/],
    ['--off with a policy flag', { off: true, max: '3' }, /^--off: expected no other policy flag/],
  ];
  for (const [what, o, message] of bad) {
    it(`refuses ${what} naming the flag`, () => {
      assert.throws(() => autoscaleRequest('web', o), (e: unknown) => e instanceof UsageError && message.test(e.message));
    });
  }
});
