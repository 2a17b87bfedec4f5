/**
 * NATS subjects: the one definition both programs use (agents publish on
 * them, controllers subscribe). docs/internals.md lists each subject with its
 * message, publisher and cadence; change both together.
 *
 * Per-node subjects are `berth.v1.node.<node>.<kind>`, where `<node>` is the
 * node's name (a DNS label) and `<kind>` one of NodeSubjectKind.
 */
import { dnsLabelProblem } from './workload/names.js';

export type NodeSubjectKind = 'heartbeat' | 'containers' | 'metrics' | 'pull' | 'traffic';

const NODE_SUBJECT_PREFIX = 'berth.v1.node.';

/** The subject node `node` publishes `kind` messages on. */
export function nodeSubject(node: string, kind: NodeSubjectKind): string {
  return `${NODE_SUBJECT_PREFIX}${node}.${kind}`;
}

/** Every node's `kind` subject, to subscribe to. */
export function nodeSubjectWildcard(kind: NodeSubjectKind): string {
  return `${NODE_SUBJECT_PREFIX}*.${kind}`;
}

/**
 * The node a received per-node subject names, or undefined when the subject
 * is not `berth.v1.node.<DNS label>.<kind>` (hostile or misrouted: drop it).
 */
export function nodeOfSubject(subject: string, kind: NodeSubjectKind): string | undefined {
  const parts = subject.split('.');
  const node = parts[3] ?? '';
  if (parts.length !== 5 || `${parts.slice(0, 3).join('.')}.` !== NODE_SUBJECT_PREFIX || parts[4] !== kind) return undefined;
  return dnsLabelProblem(node) === undefined ? node : undefined;
}

/** A node's heartbeats (protobuf Heartbeat). */
export const heartbeatSubject = (node: string): string => nodeSubject(node, 'heartbeat');
/** A node's container reports (protobuf ContainerReport). */
export const containersSubject = (node: string): string => nodeSubject(node, 'containers');
/** A node's replica load metrics for the autoscaler (protobuf NodeMetrics). */
export const metricsSubject = (node: string): string => nodeSubject(node, 'metrics');
/** A node's per-endpoint traffic figures, every 2 s (protobuf NodeTraffic). */
export const trafficSubject = (node: string): string => nodeSubject(node, 'traffic');
/** A node's image pull progress (protobuf PullProgress). */
export const pullSubject = (node: string): string => nodeSubject(node, 'pull');

export const HEARTBEAT_SUBJECT_WILDCARD = nodeSubjectWildcard('heartbeat');
export const CONTAINERS_SUBJECT_WILDCARD = nodeSubjectWildcard('containers');
export const METRICS_SUBJECT_WILDCARD = nodeSubjectWildcard('metrics');
export const TRAFFIC_SUBJECT_WILDCARD = nodeSubjectWildcard('traffic');
/** NodeTraffic.version this code writes and accepts; bumped on incompatible changes. */
export const TRAFFIC_VERSION = 1;
/** NodeMetrics.version this code writes and accepts; bumped on incompatible changes. */
export const METRICS_VERSION = 1;

/** Cluster events from the leader controller (protobuf Event); best effort, etcd keeps the history. */
export const EVENTS_SUBJECT = 'berth.v1.events';
