/**
 * `spec.autoscale` of a workload file (issue 8): read and checked like every
 * other field (path, line, what was expected), defaults filled in. The rules
 * that tie it to the rest of the spec (cpu needs a cpu request, requests and
 * connections need ports, replicas within min..max) are checked by
 * checkAutoscaleAgainstSpec once the whole spec is read.
 */
import type { AutoscaleSpec, ScaleBehavior, WorkloadSpec } from '../../proto/gen/berth/v1/types.js';
import { isUnset, readEnum, readFields, readNumber, readWhole, type FieldEntry, type Reporter } from './reader.js';
import { WORKLOAD_LIMITS as L } from './types.js';

export const AUTOSCALE_METRICS = ['cpu', 'requests', 'connections'] as const;

export const AUTOSCALE_DEFAULTS = {
  min: 1,
  tolerance: 0.1,
  scaleUp: { stabilizationSeconds: 0, maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 },
  scaleDown: { stabilizationSeconds: 60, maxStepPercent: 50, maxStepReplicas: 0, periodSeconds: 15 },
  idleSeconds: 120,
} as const;

const FIELDS = ['min', 'max', 'metric', 'target', 'tolerance', 'scaleUp', 'scaleDown', 'scaleToZero'] as const;
const BEHAVIOR_FIELDS = ['stabilizationSeconds', 'maxStepPercent', 'maxStepReplicas', 'periodSeconds'] as const;
const ZERO_FIELDS = ['idleSeconds'] as const;
const HOUR = 3600;

/** The value of a field, or undefined when it is absent or null ("not set"). */
function value(fields: Map<string, FieldEntry>, name: string): unknown {
  const entry = fields.get(name);
  return entry === undefined || isUnset(entry.value) ? undefined : entry.value;
}

function readBehavior(r: Reporter, node: unknown, path: string, defaults: ScaleBehavior, maxPercent: number): ScaleBehavior | undefined {
  const fields = readFields(r, node, path, BEHAVIOR_FIELDS, 'a mapping with stabilizationSeconds, maxStepPercent, maxStepReplicas and periodSeconds');
  if (fields === undefined) return undefined;
  const get = (name: string, min: number, max: number, fallback: number): number | undefined => {
    const n = value(fields, name);
    return n === undefined ? fallback : readWhole(r, n, `${path}.${name}`, min, max);
  };
  const stabilizationSeconds = get('stabilizationSeconds', 0, HOUR, defaults.stabilizationSeconds);
  const maxStepPercent = get('maxStepPercent', 1, maxPercent, defaults.maxStepPercent);
  const maxStepReplicas = get('maxStepReplicas', 0, L.maxReplicas, defaults.maxStepReplicas);
  const periodSeconds = get('periodSeconds', 1, HOUR, defaults.periodSeconds);
  if (stabilizationSeconds === undefined || maxStepPercent === undefined || maxStepReplicas === undefined || periodSeconds === undefined) return undefined;
  return { stabilizationSeconds, maxStepPercent, maxStepReplicas, periodSeconds };
}

/** Reads `spec.autoscale`; undefined after reporting problems. */
export function readAutoscale(r: Reporter, node: unknown): AutoscaleSpec | undefined {
  const path = 'spec.autoscale';
  const before = r.count;
  const fields = readFields(r, node, path, FIELDS, 'a mapping with at least max, metric and target');
  if (fields === undefined) return undefined;
  const minNode = value(fields, 'min');
  const min = minNode === undefined ? AUTOSCALE_DEFAULTS.min : readWhole(r, minNode, `${path}.min`, 0, L.maxReplicas);
  const maxNode = value(fields, 'max');
  const max = maxNode === undefined ? undefined : readWhole(r, maxNode, `${path}.max`, 1, L.maxReplicas);
  if (maxNode === undefined) r.report(`${path}.max`, fields.get('max')?.key ?? node, 'required field is missing (expected the most replicas, e.g. 10)');
  const metricNode = value(fields, 'metric');
  const metric = metricNode === undefined ? undefined : readEnum(r, metricNode, `${path}.metric`, AUTOSCALE_METRICS);
  if (metricNode === undefined) r.report(`${path}.metric`, fields.get('metric')?.key ?? node, 'required field is missing (expected one of "cpu", "requests", "connections")');
  const targetNode = value(fields, 'target');
  const target = targetNode === undefined ? undefined : readNumber(r, targetNode, `${path}.target`, 0, metric === 'cpu' ? 1000 : 1_000_000, true);
  if (targetNode === undefined) r.report(`${path}.target`, fields.get('target')?.key ?? node, 'required field is missing (expected cpu: percent of the requested cpu, requests: per second per replica, connections: open per replica)');
  const tolNode = value(fields, 'tolerance');
  const tolerance = tolNode === undefined ? AUTOSCALE_DEFAULTS.tolerance : readNumber(r, tolNode, `${path}.tolerance`, 0, 0.9);
  const upNode = value(fields, 'scaleUp');
  const scaleUp = upNode === undefined ? { ...AUTOSCALE_DEFAULTS.scaleUp } : readBehavior(r, upNode, `${path}.scaleUp`, AUTOSCALE_DEFAULTS.scaleUp, 1000);
  const downNode = value(fields, 'scaleDown');
  const scaleDown = downNode === undefined ? { ...AUTOSCALE_DEFAULTS.scaleDown } : readBehavior(r, downNode, `${path}.scaleDown`, AUTOSCALE_DEFAULTS.scaleDown, 100);
  let idle: number | undefined;
  const zeroNode = value(fields, 'scaleToZero');
  if (zeroNode !== undefined) {
    const zf = readFields(r, zeroNode, `${path}.scaleToZero`, ZERO_FIELDS, 'a mapping with idleSeconds');
    if (zf !== undefined) {
      const idleNode = value(zf, 'idleSeconds');
      idle = idleNode === undefined ? AUTOSCALE_DEFAULTS.idleSeconds : readWhole(r, idleNode, `${path}.scaleToZero.idleSeconds`, 1, 24 * HOUR);
    }
    if (metric === 'cpu') r.report(`${path}.scaleToZero`, zeroNode, 'expected metric "requests" or "connections" with scaleToZero (at zero replicas there is no cpu to measure; a request wakes the workload)');
  }
  if (min !== undefined && max !== undefined && max < min) r.report(`${path}.max`, maxNode, `expected max to be at least min (${min}), got ${max}`);
  if (min === 0 && zeroNode === undefined) r.report(`${path}.min`, minNode, 'expected min of at least 1, got 0 (min 0 needs scaleToZero)');
  if (r.count > before || min === undefined || max === undefined || metric === undefined || target === undefined || tolerance === undefined || !scaleUp || !scaleDown) return undefined;
  const spec: AutoscaleSpec = { min, max, metric, target, tolerance, scaleUp, scaleDown };
  if (idle !== undefined) spec.scaleToZeroIdleSeconds = idle;
  return spec;
}

/**
 * Rules across fields: the cpu metric needs a cpu request (its target is a
 * percentage of it); requests and connections are counted at the service
 * address, so the workload needs ports; replicas (when written) within
 * min..max. `replicasNode` is undefined when the file did not set replicas,
 * in which case the start count becomes max(min, 1).
 */
export function checkAutoscaleAgainstSpec(r: Reporter, spec: WorkloadSpec, autoscaleNode: unknown, replicasNode: unknown): void {
  const a = spec.autoscale;
  if (!a) return;
  if (a.metric === 'cpu' && (spec.resources?.cpuMillis ?? 0) === 0) {
    r.report('spec.autoscale.metric', autoscaleNode, 'expected spec.resources.cpu to be set with metric "cpu" (the target is a percentage of the requested cpu)');
  }
  if (a.metric !== 'cpu' && spec.ports.length === 0) {
    r.report('spec.autoscale.metric', autoscaleNode, `expected spec.ports with metric "${a.metric}" (traffic is counted at the workload's service address)`);
  }
  if (replicasNode === undefined) spec.replicas = Math.max(a.min, 1);
  else if (spec.replicas < a.min || spec.replicas > a.max) {
    r.report('spec.replicas', replicasNode, `expected replicas from autoscale.min ${a.min} to autoscale.max ${a.max} (the autoscaler owns the count), got ${spec.replicas}`);
  }
}

/** One problem with an AutoscaleSpec given through the API (`berth autoscale`). */
export interface AutoscaleProblem {
  field: string;
  message: string;
}

/**
 * Checks an AutoscaleSpec that did not come from a file (the API's
 * Autoscale call) with the same rules as the file, against the workload's
 * spec. Missing scaleUp/scaleDown are filled with the defaults in place.
 */
export function autoscaleSpecProblems(a: AutoscaleSpec, spec: WorkloadSpec): AutoscaleProblem[] {
  const out: AutoscaleProblem[] = [];
  const bad = (field: string, message: string): void => void out.push({ field: `autoscale.${field}`, message });
  const whole = (v: number, min: number, max: number): boolean => Number.isInteger(v) && v >= min && v <= max;
  a.scaleUp ??= { ...AUTOSCALE_DEFAULTS.scaleUp };
  a.scaleDown ??= { ...AUTOSCALE_DEFAULTS.scaleDown };
  if (!whole(a.min, 0, L.maxReplicas)) bad('min', `expected a whole number from 0 to ${L.maxReplicas}, got ${a.min}`);
  if (!whole(a.max, 1, L.maxReplicas)) bad('max', `expected a whole number from 1 to ${L.maxReplicas}, got ${a.max}`);
  else if (a.max < a.min) bad('max', `expected max to be at least min (${a.min}), got ${a.max}`);
  if (!(AUTOSCALE_METRICS as readonly string[]).includes(a.metric)) bad('metric', `expected one of "cpu", "requests", "connections", got "${a.metric}"`);
  const targetMax = a.metric === 'cpu' ? 1000 : 1_000_000;
  if (!(a.target > 0 && a.target <= targetMax)) bad('target', `expected a number above 0 and at most ${targetMax}, got ${a.target}`);
  if (!(a.tolerance >= 0 && a.tolerance <= 0.9)) bad('tolerance', `expected a number from 0 to 0.9, got ${a.tolerance}`);
  for (const [name, b, maxPercent] of [['scaleUp', a.scaleUp, 1000], ['scaleDown', a.scaleDown, 100]] as const) {
    if (!whole(b.stabilizationSeconds, 0, HOUR)) bad(`${name}.stabilizationSeconds`, `expected a whole number from 0 to ${HOUR}, got ${b.stabilizationSeconds}`);
    if (!whole(b.maxStepPercent, 1, maxPercent)) bad(`${name}.maxStepPercent`, `expected a whole number from 1 to ${maxPercent}, got ${b.maxStepPercent}`);
    if (!whole(b.maxStepReplicas, 0, L.maxReplicas)) bad(`${name}.maxStepReplicas`, `expected a whole number from 0 to ${L.maxReplicas}, got ${b.maxStepReplicas}`);
    if (!whole(b.periodSeconds, 1, HOUR)) bad(`${name}.periodSeconds`, `expected a whole number from 1 to ${HOUR}, got ${b.periodSeconds}`);
  }
  if (a.scaleToZeroIdleSeconds !== undefined) {
    if (!whole(a.scaleToZeroIdleSeconds, 1, 24 * HOUR)) bad('scaleToZero.idleSeconds', `expected a whole number from 1 to ${24 * HOUR}, got ${a.scaleToZeroIdleSeconds}`);
    if (a.metric === 'cpu') bad('scaleToZero', 'expected metric "requests" or "connections" with scale to zero (at zero replicas there is no cpu to measure)');
  } else if (a.min === 0) bad('min', 'expected min of at least 1, got 0 (min 0 needs scale to zero)');
  if (a.metric === 'cpu' && (spec.resources?.cpuMillis ?? 0) === 0) bad('metric', 'expected the workload to request cpu (spec.resources.cpu) with metric "cpu": the target is a percentage of it');
  if ((a.metric === 'requests' || a.metric === 'connections') && spec.ports.length === 0) bad('metric', `expected the workload to have ports with metric "${a.metric}": traffic is counted at its service address`);
  return out;
}
