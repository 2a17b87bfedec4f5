/**
 * The scheduler: a pure function from a cluster snapshot and a workload's
 * pending replicas to a placement plan with reasons. No I/O. See README.md
 * for the pipeline (request -> feasibility -> fit -> score -> plan), the
 * vocabulary and the rejection reasons.
 */
export type {
  ClusterSnapshot,
  ExistingReplica,
  NodeSnapshot,
  Placement,
  PlacementConstraints,
  PlacementPlan,
  PlacementRequest,
  ReasonCount,
  Removal,
  RemovalRequest,
  RemovalWhy,
  ResourceAmounts,
  ScheduleOptions,
  Unplaced,
  VolumeLocation,
} from './types.js';
export { volumeSummary } from './volumes.js';
export { RejectReason, REASON_ORDER, reasonText, countReasons, formatSummary } from './reasons.js';
export { SchedulerInputError } from './errors.js';
export { schedule, withPlacements, defaultPipeline } from './plan.js';
export type { Pipeline } from './plan.js';
export {
  readyFilter,
  cordonFilter,
  nodeSelectorFilter,
  requiredNodeFilter,
  volumeFilter,
  cpuFilter,
  memoryFilter,
  pidsFilter,
  maxPerNodeFilter,
  defaultFilters,
  firstRejection,
} from './filters.js';
export type { NodeFilter, FilterStage } from './filters.js';
export { spreadScorer, binpackScorer, scorerFor, utilizationAfter } from './scorers.js';
export type { Scorer } from './scorers.js';
export { compileRequest, buildState, place, compareTie, MAX_REPLICAS_PER_REQUEST } from './state.js';
export type { CompiledRequest, WorkingState } from './state.js';
export { chooseRemovals } from './removal.js';
export { createRng, hashString, seededHasher, randomInt } from './random.js';
