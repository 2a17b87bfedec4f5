/** Node membership: records from the store, liveness from NATS heartbeats. */
export { Membership, stateName, REFRESH_INTERVAL_MS, type MembershipOptions } from './membership.js';
export { HeartbeatTracker, HEARTBEAT_INTERVAL_MS, READY_WINDOW_MS, CHECK_INTERVAL_MS, type LiveStatus } from './tracker.js';
export {
  NatsHeartbeats, heartbeatSubject, parseHeartbeat, HEARTBEAT_SUBJECT_WILDCARD, MAX_HEARTBEAT_BYTES,
  type HeartbeatSource, type NatsHeartbeatsOptions,
} from './nats.js';
export {
  ObservedState, NatsContainerReports, parseContainerReport, containersSubject, CONTAINERS_SUBJECT_WILDCARD, MAX_REPORT_BYTES, MAX_REPORT_CONTAINERS,
  type NatsContainerReportsOptions,
} from './reports.js';
export { NatsEventPublisher, EVENTS_SUBJECT, type EventPublisher } from './events.js';
export { connectWithRetry, closeGracefully, subscribeParsed, ParsedSubscription, type Parsed, type ParsedSubscriptionOptions } from './connect.js';
export { NatsActivations, type NatsActivationsOptions } from './activations.js';
export { NatsNodeMetrics, parseNodeMetrics, metricsSubject, METRICS_SUBJECT_WILDCARD, MAX_METRICS_BYTES, MAX_METRICS_REPLICAS, type NatsNodeMetricsOptions } from './metrics.js';
export { NatsPullProgress, PullWatchers, parsePullProgress, PULL_SUBJECT_WILDCARD, MAX_PULL_BYTES, MAX_PULL_LAYERS, type NatsPullProgressOptions } from './pulls.js';
