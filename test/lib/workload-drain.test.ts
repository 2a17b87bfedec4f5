/**
 * spec.drainSeconds (connection draining): validation, the default that
 * depends on the ports, and its place in the canonical spec (the template of
 * a replica is tested in test/controller/reconcile/drain.test.ts).
 */
import assert from 'node:assert/strict';
import {
  canonicalWorkloadSpec,
  DEFAULT_DRAIN_SECONDS,
  drainSecondsFor,
  MAX_DRAIN_SECONDS,
  validateWorkloadFile,
  ValidationError,
  workloadSpecsEqual,
  type WorkloadProblem,
} from '../../lib/index.js';

function file(...specLines: string[]): string {
  return ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  image: busybox', ...specLines.map((l) => `  ${l}`)].join('\n') + '\n';
}

function spec(...specLines: string[]) {
  const [w] = validateWorkloadFile(file(...specLines), { defaultRegistry: '127.0.0.1:5000' });
  assert.ok(w);
  return w.spec;
}

function problems(text: string): WorkloadProblem[] {
  try {
    validateWorkloadFile(text, { defaultRegistry: '127.0.0.1:5000' });
  } catch (err) {
    assert.ok(err instanceof ValidationError);
    return err.problems as WorkloadProblem[];
  }
  assert.fail('expected the file to be refused');
}

describe('workload spec.drainSeconds', () => {
  it('defaults to 3 s for a workload with ports and 0 without, leaving the field unset', () => {
    const withPorts = spec('ports: [{ container: 80 }]');
    assert.equal(withPorts.drainSeconds, undefined);
    assert.equal(drainSecondsFor(withPorts), DEFAULT_DRAIN_SECONDS);
    const without = spec();
    assert.equal(without.drainSeconds, undefined);
    assert.equal(drainSecondsFor(without), 0);
  });

  it('keeps a value other than the default and gives the same spec when the default is written out', () => {
    assert.equal(spec('ports: [{ container: 80 }]', 'drainSeconds: 7').drainSeconds, 7);
    assert.equal(spec('ports: [{ container: 80 }]', 'drainSeconds: 0').drainSeconds, 0);
    assert.equal(spec('drainSeconds: 2').drainSeconds, 2);
    const implicit = spec('ports: [{ container: 80 }]');
    const explicit = spec('ports: [{ container: 80 }]', `drainSeconds: ${DEFAULT_DRAIN_SECONDS}`);
    assert.equal(explicit.drainSeconds, undefined);
    assert.ok(workloadSpecsEqual(implicit, explicit));
    assert.ok(!workloadSpecsEqual(implicit, spec('ports: [{ container: 80 }]', 'drainSeconds: 5')));
    // A spec built elsewhere with the default written out has the same canonical text.
    assert.equal(canonicalWorkloadSpec({ ...implicit, drainSeconds: DEFAULT_DRAIN_SECONDS }), canonicalWorkloadSpec(implicit));
    assert.match(canonicalWorkloadSpec(spec('ports: [{ container: 80 }]', 'drainSeconds: 5')), /"drainSeconds":5/);
  });

  it('refuses a value that is not a whole number of seconds from 0 to the maximum, naming the field and line', () => {
    for (const [value, got] of [['11', '11'], ['-1', '-1'], ['1.5', '1.5'], ['"3"', 'the string "3" (remove the quotes)'], ['[3]', 'a list']] as const) {
      const p = problems(file('ports: [{ container: 80 }]', `drainSeconds: ${value}`));
      assert.equal(p.length, 1, JSON.stringify(p));
      assert.equal(p[0]?.path, 'spec.drainSeconds');
      assert.equal(p[0]?.line, 8);
      assert.ok(p[0]?.message.startsWith(`expected a whole number of seconds from 0 to ${MAX_DRAIN_SECONDS}, got `), p[0]?.message);
      assert.ok(p[0]?.message.includes(got), `${p[0]?.message} names ${got}`);
    }
  });

  it('is reported together with the other problems of the spec', () => {
    const p = problems(file('replicas: -1', 'drainSeconds: 99'));
    assert.deepEqual(p.map((x) => x.path).sort(), ['spec.drainSeconds', 'spec.replicas']);
  });
});
