/**
 * The autoscaler's decision: a pure function from a policy, one observation
 * and the recent history to a replica count and a sentence saying why.
 * No I/O and no clock of its own (the observation carries the time), so the
 * leader can call it every second and tests can drive it with tables.
 *
 * Steps, in order:
 *   1. recommendation  ceil(total / target) over the ready replicas. Going
 *      up, starting replicas count as idle capacity that will soon take load
 *      (no scale-up past them); going down, they count as loaded at the
 *      target (never as idle). Within the tolerance band: no change.
 *      Scale to zero only with `scaleToZero`, a requests/connections metric,
 *      nothing starting and no activity for `idleSeconds`; otherwise a
 *      workload with load never recommends fewer than one replica.
 *   2. stabilization   up: the lowest recommendation in the scale-up window;
 *      down: the highest recommendation in the scale-down window.
 *   3. step limits     per period, at most the larger of maxStepPercent of
 *      the replicas at the period's start and maxStepReplicas (at least 1).
 *   4. min/max clamp.
 * A held connection at zero replicas (activation) skips 2 and 3: the first
 * replica starts at once.
 */
import { InvalidArgumentError } from '../../lib/errors.js';
import type {
  AutoscaleDecision,
  AutoscaleHistory,
  AutoscaleObservation,
  AutoscalePolicy,
  Recommendation,
  ScaleBehavior,
  ScaleChange,
} from './types.js';

/** Bad input to the decision function: a caller bug, named by field. */
export class AutoscaleInputError extends InvalidArgumentError {
  override name = 'AutoscaleInputError';
  constructor(field: string, expected: string, got: unknown) {
    super(`invalid autoscaler input ${field}: expected ${expected}, got ${JSON.stringify(got)}`, { field });
  }
}

function checkCount(field: string, v: number): void {
  if (!Number.isInteger(v) || v < 0) throw new AutoscaleInputError(field, 'a whole number >= 0', v);
}

function checkInputs(policy: AutoscalePolicy, obs: AutoscaleObservation): void {
  checkCount('policy.min', policy.min);
  checkCount('policy.max', policy.max);
  if (policy.max < Math.max(policy.min, 1)) throw new AutoscaleInputError('policy.max', `a number >= max(min, 1) = ${Math.max(policy.min, 1)}`, policy.max);
  if (!(policy.target > 0) || !Number.isFinite(policy.target)) throw new AutoscaleInputError('policy.target', 'a number > 0', policy.target);
  if (!(policy.tolerance >= 0) || !Number.isFinite(policy.tolerance)) throw new AutoscaleInputError('policy.tolerance', 'a number >= 0', policy.tolerance);
  checkCount('observation.current', obs.current);
  checkCount('observation.ready', obs.ready);
  checkCount('observation.starting', obs.starting);
  if (!(obs.total >= 0) || !Number.isFinite(obs.total)) throw new AutoscaleInputError('observation.total', 'a finite number >= 0', obs.total);
  if (!Number.isFinite(obs.nowMs)) throw new AutoscaleInputError('observation.nowMs', 'a time in milliseconds', obs.nowMs);
}

function unitOf(policy: AutoscalePolicy): { perReplica: (v: number) => string; total: (v: number) => string } {
  const n = (v: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 1 : 0));
  switch (policy.metric) {
    case 'cpu':
      return { perReplica: (v) => `${n(v)}%`, total: (v) => `cpu ${n(v)}% of the requested cpu on average` };
    case 'requests':
      return { perReplica: (v) => `${n(v)}/s`, total: (v) => `requests ${n(v)}/s` };
    case 'connections':
      return { perReplica: (v) => `${n(v)} open`, total: (v) => `connections ${n(v)} open` };
  }
}

function zeroAllowed(policy: AutoscalePolicy): boolean {
  return policy.scaleToZero !== undefined && policy.metric !== 'cpu' && policy.min === 0;
}

interface Raw {
  replicas: number;
  /** Why, in words, without the workload name. */
  basis: string;
}

/** Step 1: what the metric alone asks for now. */
function recommend(policy: AutoscalePolicy, obs: AutoscaleObservation): Raw {
  const u = unitOf(policy);
  const { current, ready, starting, total } = obs;
  if (ready === 0) {
    if (current === 0) return { replicas: 0, basis: 'no replicas and no connection waiting' };
    return { replicas: current, basis: `no ready replica to measure (${starting} starting)` };
  }
  // cpu is reported as percent of one replica's request summed over replicas; the sentence shows the average.
  const shown = policy.metric === 'cpu' ? total / ready : total;
  const measured = `${u.total(shown)} over ${ready} ready replica${ready === 1 ? '' : 's'}, target ${u.perReplica(policy.target)}`;
  const ratio = total / ready / policy.target;
  if (Math.abs(ratio - 1) <= policy.tolerance) {
    return { replicas: current, basis: `${measured} (within the ${Math.round(policy.tolerance * 100)}% tolerance)` };
  }
  if (ratio > 1) {
    // Starting replicas will take load soon: don't add past them, and never go down while over target.
    return { replicas: Math.max(current, Math.ceil(total / policy.target)), basis: measured };
  }
  // Under target: starting replicas count as loaded at the target; never go up while under target.
  let replicas = Math.min(current, Math.ceil(total / policy.target + starting));
  if (replicas === 0) {
    const idleFor = obs.lastActiveMs === undefined ? Infinity : obs.nowMs - obs.lastActiveMs;
    const idleNeeded = (policy.scaleToZero?.idleSeconds ?? Infinity) * 1000;
    if (!zeroAllowed(policy) || idleFor < idleNeeded) replicas = 1;
    else return { replicas: 0, basis: `no ${policy.metric} for ${Math.round(idleFor / 1000)}s (scaleToZero.idleSeconds ${policy.scaleToZero?.idleSeconds})` };
  }
  return { replicas, basis: measured };
}

function allowedStep(b: ScaleBehavior, periodStart: number): number {
  return Math.max(Math.ceil((periodStart * b.maxStepPercent) / 100), b.maxStepReplicas, 1);
}

function prune(history: AutoscaleHistory, policy: AutoscalePolicy, nowMs: number): AutoscaleHistory {
  const recWindow = Math.max(policy.scaleUp.stabilizationSeconds, policy.scaleDown.stabilizationSeconds) * 1000;
  const changeWindow = Math.max(policy.scaleUp.periodSeconds, policy.scaleDown.periodSeconds) * 1000;
  return {
    recommendations: history.recommendations.filter((r) => r.atMs > nowMs - recWindow && r.atMs <= nowMs),
    changes: history.changes.filter((c) => c.atMs > nowMs - changeWindow && c.atMs <= nowMs),
    sinceMs: Math.min(history.sinceMs ?? nowMs, nowMs),
  };
}

/**
 * Decides the replica count of workload `name`. Pure: pass the returned
 * history to the next call.
 */
export function decide(name: string, policy: AutoscalePolicy, obs: AutoscaleObservation, history: AutoscaleHistory): AutoscaleDecision {
  checkInputs(policy, obs);
  const { nowMs, current } = obs;
  const past = prune(history, policy, nowMs);
  const finish = (desired: number, raw: Raw, limitedBy: string | undefined, recs: Recommendation[]): AutoscaleDecision => {
    const changed = desired !== current;
    const changes: ScaleChange[] = changed ? [...past.changes, { atMs: nowMs, from: current, to: desired }] : past.changes;
    const held = limitedBy === undefined ? '' : ` (${limitedBy})`;
    const reason = changed ? `scaled ${name} ${current} -> ${desired}: ${raw.basis}${held}` : `${name} stays at ${current}: ${raw.basis}${held}`;
    return { desired, changed, recommendation: raw.replicas, reason, ...(limitedBy === undefined ? {} : { limitedBy }), history: { recommendations: recs, changes, sinceMs: past.sinceMs ?? nowMs } };
  };

  if (obs.activation === true && current === 0) {
    const raw: Raw = { replicas: Math.max(1, policy.min), basis: 'connection held at the service address' };
    return finish(Math.min(raw.replicas, policy.max), raw, undefined, [...past.recommendations, { atMs: nowMs, replicas: raw.replicas }]);
  }

  const raw = recommend(policy, obs);
  const recs = [...past.recommendations, { atMs: nowMs, replicas: raw.replicas }];
  let desired = current;
  let limitedBy: string | undefined;

  // 2. stabilization windows.
  const upFrom = nowMs - policy.scaleUp.stabilizationSeconds * 1000;
  const downFrom = nowMs - policy.scaleDown.stabilizationSeconds * 1000;
  const upRec = Math.min(...recs.filter((r) => r.atMs > upFrom || r.atMs === nowMs).map((r) => r.replicas));
  let downRec = Math.max(...recs.filter((r) => r.atMs > downFrom || r.atMs === nowMs).map((r) => r.replicas));
  // A window not yet covered by this history (a new policy, a new leader) holds the count: nothing is known about its start.
  const covered = nowMs - (past.sinceMs ?? nowMs) >= policy.scaleDown.stabilizationSeconds * 1000;
  if (!covered) downRec = Math.max(downRec, current);
  if (upRec > current) desired = upRec;
  else if (downRec < current) desired = downRec;
  if (raw.replicas > current && upRec < raw.replicas) {
    limitedBy = `scale-up stabilization: lowest recommendation in the last ${policy.scaleUp.stabilizationSeconds}s was ${upRec}`;
  } else if (raw.replicas < current && downRec > raw.replicas) {
    limitedBy = covered
      ? `scale-down stabilization: highest recommendation in the last ${policy.scaleDown.stabilizationSeconds}s was ${downRec}`
      : `scale-down stabilization: ${Math.round((nowMs - (past.sinceMs ?? nowMs)) / 1000)}s of the ${policy.scaleDown.stabilizationSeconds}s window seen so far`;
  }

  // 3. step limits per period.
  if (desired > current) {
    const added = past.changes.filter((c) => c.atMs > nowMs - policy.scaleUp.periodSeconds * 1000).reduce((n, c) => n + Math.max(0, c.to - c.from), 0);
    const periodStart = Math.max(0, current - added);
    const limit = periodStart + allowedStep(policy.scaleUp, periodStart);
    if (desired > limit) {
      desired = Math.max(current, limit);
      limitedBy = `scale-up step limit: at most ${limit - periodStart} added per ${policy.scaleUp.periodSeconds}s`;
    }
  } else if (desired < current) {
    const removed = past.changes.filter((c) => c.atMs > nowMs - policy.scaleDown.periodSeconds * 1000).reduce((n, c) => n + Math.max(0, c.from - c.to), 0);
    const periodStart = current + removed;
    const limit = Math.max(0, periodStart - allowedStep(policy.scaleDown, periodStart));
    if (desired < limit) {
      desired = Math.min(current, limit);
      limitedBy = `scale-down step limit: at most ${periodStart - limit} removed per ${policy.scaleDown.periodSeconds}s`;
    }
  }

  // 4. min/max.
  if (desired < policy.min) {
    desired = policy.min;
    if (raw.replicas < policy.min) limitedBy = `min ${policy.min}`;
  }
  if (desired > policy.max) {
    desired = policy.max;
    limitedBy = `max ${policy.max}`;
  }
  return finish(desired, raw, limitedBy, recs);
}
