/**
 * The reconciler: desired state (workloads in the store) vs observed state
 * (container reports from agents) -> actions (records, RunContainer,
 * StopContainer/RemoveContainer). decide() is the pure decision; Reconciler
 * carries it out while this controller leads.
 */
export {
  decide, ROLLBACK_AFTER_FAILURES, RESTARTED_AT_LABEL, restartedAtLabelValue, containerSpecFor, templateKey, replicaName, isReady,
  type NodeCondition, type ReconcileNode, type ObservedNode, type ReconcileInput, type ReconcilePlan, type RemoveAction, type Rollback, type PlannedEvent, type EventReason,
} from './decide.js';
export {
  Reconciler, FIRST_HEARTBEATS_MS, RESYNC_INTERVAL_MS, RUN_SETTLE_MS, DEFAULT_CONCURRENCY, STOP_GRACE_SECONDS, type ReconcilerOptions,
} from './reconciler.js';
export { EventRecorder, FLUSH_INTERVAL_MS, type EventSink } from './events.js';
export { reconcileNodes, LOST_AFTER_LISTENING_MS } from './nodes.js';
export { placeOneOff, generateName, ONE_OFF_SETTLE_MS, type OneOffRequest } from './oneoff.js';
export {
  rolloutProgress, previewApply, rollbackCause, parseRollbackCause, MAX_NOT_READY,
  type RolloutProgress, type ProgressInput, type ApplyPreviewView, type PlannedReplicaView, type PreviewInput,
} from './progress.js';
