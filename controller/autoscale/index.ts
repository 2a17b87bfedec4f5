/**
 * The built-in autoscaler (issue 8). decide() is pure: policy + observation +
 * history -> replica count and reason. See types.ts for the vocabulary.
 */
export type {
  AutoscaleDecision,
  AutoscaleHistory,
  AutoscaleMetric,
  AutoscaleObservation,
  AutoscalePolicy,
  Recommendation,
  ScaleBehavior,
  ScaleChange,
} from './types.js';
export { EMPTY_HISTORY } from './types.js';
export { decide, AutoscaleInputError } from './decide.js';
export { LoadWindow } from './window.js';
export type { ReplicaSample, WindowOptions } from './window.js';
export { Autoscaler } from './autoscaler.js';
export type { AutoscaledWorkload, AutoscaleTarget, AutoscaleEvents, AutoscalerOptions, TickResult } from './autoscaler.js';
export { LeaderAutoscaler, StoreAutoscaleTarget, policyOf, type LeaderAutoscalerOptions } from './leader.js';
