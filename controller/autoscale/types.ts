/**
 * Vocabulary of the autoscaler (issue 8).
 *
 *   policy          what the workload file's `autoscale:` says (min, max,
 *                   metric, target, tolerance, scale-up/down behaviour, scale
 *                   to zero).
 *   observation     what the leader knows about one workload at one instant:
 *                   the replica count it currently wants, how many replicas
 *                   are ready and how many are starting (or unready), and the
 *                   metric summed over the ready replicas.
 *   recommendation  the replica count the metric alone asks for at one
 *                   instant, before stabilization windows and step limits.
 *   history         the recommendations and the changes made recently; the
 *                   decision function is pure, so the caller keeps the
 *                   history it returns and passes it to the next call.
 */

/** The metric a workload scales on. */
export type AutoscaleMetric = 'cpu' | 'requests' | 'connections';

export interface ScaleBehavior {
  /** Look back this far at earlier recommendations before acting (0 = act on the latest alone). */
  stabilizationSeconds: number;
  /** At most this percentage of the replicas at the start of the period may be added (removed) per period. */
  maxStepPercent: number;
  /** At most this many replicas per period (0 = no count limit; with a percentage too, the larger change is allowed). */
  maxStepReplicas: number;
  /** Length of the step-limit period. */
  periodSeconds: number;
}

export interface AutoscalePolicy {
  min: number;
  max: number;
  metric: AutoscaleMetric;
  /** cpu: percent of the requested CPU per replica; requests: per second per replica; connections: open per replica. */
  target: number;
  /** No change while |observed/target - 1| <= tolerance. */
  tolerance: number;
  scaleUp: ScaleBehavior;
  scaleDown: ScaleBehavior;
  /** Scale to zero after this long without requests or connections (requests/connections metrics only). */
  scaleToZero?: { idleSeconds: number };
}

export interface AutoscaleObservation {
  /** Milliseconds since the epoch; every time in the history is on the same clock. */
  nowMs: number;
  /** Replicas the workload asks for now (its desired count). */
  current: number;
  /** Replicas running and passing their health checks, with metric samples. */
  ready: number;
  /** Replicas asked for but not ready yet (starting, unhealthy, pending). Never counted as idle. */
  starting: number;
  /** The metric summed over the ready replicas (cpu: percent of one replica's request, summed). */
  total: number;
  /** Last time the metric was above zero (requests/connections); undefined = not seen in the window. */
  lastActiveMs?: number;
  /** A connection is being held for a workload at zero replicas (scale-from-zero activation). */
  activation?: boolean;
}

export interface Recommendation {
  atMs: number;
  replicas: number;
}

export interface ScaleChange {
  atMs: number;
  from: number;
  to: number;
}

export interface AutoscaleHistory {
  recommendations: Recommendation[];
  changes: ScaleChange[];
  /** When this history began (the first decision). A scale-down waits until the scale-down window is covered. */
  sinceMs?: number;
}

export interface AutoscaleDecision {
  /** The replica count to set (equal to observation.current when nothing changes). */
  desired: number;
  changed: boolean;
  /** What the metric alone asked for at this instant. */
  recommendation: number;
  /** One line for events and describe, e.g. `scaled web 3 -> 7: requests 1450/s over 3 ready replicas, target 200/s`. */
  reason: string;
  /** What held the change back, when something did (stabilization window, step limit, min, max). */
  limitedBy?: string;
  /** The history to pass to the next call. */
  history: AutoscaleHistory;
}

export const EMPTY_HISTORY: AutoscaleHistory = { recommendations: [], changes: [] };
