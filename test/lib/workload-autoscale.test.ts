import assert from 'node:assert/strict';
import { canonicalWorkloadSpec, validateWorkloadFile, ValidationError, type WorkloadProblem } from '../../lib/index.js';
import { keepAutoscaledReplicas } from '../../controller/store/plan.js';

const REG = '127.0.0.1:5000';

function file(...specLines: string[]): string {
  return ['apiVersion: berth/v1', 'kind: Workload', 'metadata: { name: web }', 'spec:', '  image: web:1', ...specLines.map((l) => `  ${l}`)].join('\n') + '\n';
}

function problems(text: string): WorkloadProblem[] {
  try {
    validateWorkloadFile(text, { defaultRegistry: REG });
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err.problems as WorkloadProblem[];
  }
  assert.fail('expected the file to be refused');
}

const CPU = ['resources: { cpu: 500m }', 'autoscale:', '  max: 10', '  metric: cpu', '  target: 60'];
const REQ = ['ports: [{ name: http, container: 8080 }]', 'autoscale:', '  min: 0', '  max: 20', '  metric: requests', '  target: 200', '  scaleToZero: { idleSeconds: 90 }'];

describe('workload file: spec.autoscale', () => {
  it('fills the defaults and starts at max(min, 1) replicas', () => {
    const [w] = validateWorkloadFile(file(...CPU), { defaultRegistry: REG });
    assert.deepEqual(w?.spec.autoscale, {
      min: 1, max: 10, metric: 'cpu', target: 60, tolerance: 0.1,
      scaleUp: { stabilizationSeconds: 0, maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 },
      scaleDown: { stabilizationSeconds: 60, maxStepPercent: 50, maxStepReplicas: 0, periodSeconds: 15 },
    });
    assert.equal(w?.spec.replicas, 1);
    const [z] = validateWorkloadFile(file(...REQ), { defaultRegistry: REG });
    assert.equal(z?.spec.autoscale?.scaleToZeroIdleSeconds, 90);
    assert.equal(z?.spec.replicas, 1);
  });

  it('reads every field of the issue\'s example', () => {
    const [w] = validateWorkloadFile(file(
      'ports: [{ name: http, container: 80 }]',
      'autoscale:',
      '  min: 0',
      '  max: 20',
      '  metric: connections',
      '  target: 60',
      '  tolerance: 0.2',
      '  scaleUp:   { stabilizationSeconds: 0,   maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 }',
      '  scaleDown: { stabilizationSeconds: 30,  maxStepPercent: 50,  periodSeconds: 15 }',
      '  scaleToZero: { idleSeconds: 120 }',
    ), { defaultRegistry: REG });
    assert.equal(w?.spec.autoscale?.tolerance, 0.2);
    assert.equal(w?.spec.autoscale?.scaleDown?.stabilizationSeconds, 30);
    assert.equal(w?.spec.autoscale?.scaleDown?.maxStepReplicas, 0);
  });

  const bad: [string, string[], string, RegExp][] = [
    ['a missing max', ['resources: { cpu: 1 }', 'autoscale: { metric: cpu, target: 60 }'], 'spec.autoscale.max', /required field is missing/],
    ['an unknown metric, with a suggestion', ['ports: [{ container: 80 }]', 'autoscale: { max: 3, metric: request, target: 5 }'], 'spec.autoscale.metric', /expected one of "cpu", "requests", "connections", got "request" \(did you mean "requests"\?\)/],
    ['a target of zero', ['resources: { cpu: 1 }', 'autoscale: { max: 3, metric: cpu, target: 0 }'], 'spec.autoscale.target', /expected a number above 0/],
    ['a quoted target', ['resources: { cpu: 1 }', 'autoscale: { max: 3, metric: cpu, target: "60" }'], 'spec.autoscale.target', /remove the quotes/],
    ['max below min', ['resources: { cpu: 1 }', 'autoscale: { min: 5, max: 3, metric: cpu, target: 60 }'], 'spec.autoscale.max', /at least min \(5\), got 3/],
    ['min 0 without scaleToZero', ['ports: [{ container: 80 }]', 'autoscale: { min: 0, max: 3, metric: requests, target: 5 }'], 'spec.autoscale.min', /min 0 needs scaleToZero/],
    ['scaleToZero on cpu', ['resources: { cpu: 1 }', 'autoscale: { min: 0, max: 3, metric: cpu, target: 60, scaleToZero: {} }'], 'spec.autoscale.scaleToZero', /expected metric "requests" or "connections"/],
    ['cpu without a cpu request', ['autoscale: { max: 3, metric: cpu, target: 60 }'], 'spec.autoscale.metric', /expected spec.resources.cpu to be set/],
    ['requests without ports', ['autoscale: { max: 3, metric: requests, target: 60 }'], 'spec.autoscale.metric', /expected spec.ports with metric "requests"/],
    ['replicas outside min..max', ['replicas: 9', 'resources: { cpu: 1 }', 'autoscale: { max: 3, metric: cpu, target: 60 }'], 'spec.replicas', /from autoscale.min 1 to autoscale.max 3 .*got 9/],
    ['a typo in a behaviour field', ['resources: { cpu: 1 }', 'autoscale: { max: 3, metric: cpu, target: 60, scaleDown: { stabilisationSeconds: 5 } }'], 'spec.autoscale.scaleDown.stabilisationSeconds', /did you mean "stabilizationSeconds"/],
    ['a scale-down step over 100%', ['resources: { cpu: 1 }', 'autoscale: { max: 3, metric: cpu, target: 60, scaleDown: { maxStepPercent: 150 } }'], 'spec.autoscale.scaleDown.maxStepPercent', /from 1 to 100, got "150"/],
    ['a tolerance of 1', ['resources: { cpu: 1 }', 'autoscale: { max: 3, metric: cpu, target: 60, tolerance: 1 }'], 'spec.autoscale.tolerance', /from 0 to 0.9, got "1"/],
  ];
  for (const [what, lines, path, message] of bad) {
    it(`refuses ${what}, naming ${path}`, () => {
      const ps = problems(file(...lines));
      const p = ps.find((x) => x.path === path);
      assert.ok(p, `no problem at ${path}; got ${ps.map((x) => `${x.path}: ${x.message}`).join('; ')}`);
      assert.match(p.message, message);
      assert.ok(p.line !== undefined && p.line > 0, 'the problem has a line number');
    });
  }

  it('makes autoscale part of the revision, without changing specs that have none', () => {
    const [a] = validateWorkloadFile(file('resources: { cpu: 1 }'), { defaultRegistry: REG });
    assert.ok(!canonicalWorkloadSpec(a!.spec).includes('autoscale'));
    const [b] = validateWorkloadFile(file(...CPU), { defaultRegistry: REG });
    const [c] = validateWorkloadFile(file(...CPU.map((l) => l.replace('target: 60', 'target: 70'))), { defaultRegistry: REG });
    assert.notEqual(canonicalWorkloadSpec(b!.spec), canonicalWorkloadSpec(c!.spec));
  });

  it('keeps the autoscaler\'s count when the same file is applied again, within the new min..max', () => {
    const [w] = validateWorkloadFile(file(...CPU), { defaultRegistry: REG });
    const spec = w!.spec;
    assert.equal(keepAutoscaledReplicas(spec, { ...spec, replicas: 7 }).replicas, 7);
    const narrower = { ...spec, autoscale: { ...spec.autoscale!, max: 5 } };
    assert.equal(keepAutoscaledReplicas(narrower, { ...spec, replicas: 7 }).replicas, 5);
    assert.equal(keepAutoscaledReplicas(spec, { ...spec, replicas: 7, autoscale: undefined }).replicas, 1, 'turning autoscale on starts from the file');
  });
});
