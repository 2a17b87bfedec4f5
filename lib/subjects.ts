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

/**
 * Scale from zero: an agent holding a connection for service `<name>` (a
 * workload at zero replicas) asks for a replica on `berth.v1.service.<name>.activate`
 * (JSON ServiceActivation), at once and then every second while it holds or
 * proxies connections for it (each message also counts as activity); every
 * controller subscribes, only the leader acts.
 */
export const activateSubject = (service: string): string => `berth.v1.service.${service}.activate`;
export const ACTIVATE_SUBJECT_WILDCARD = 'berth.v1.service.*.activate';
/** ServiceActivation.version this code writes and accepts. */
export const ACTIVATION_VERSION = 1;
export const MAX_ACTIVATION_BYTES = 1024;

export interface ServiceActivation {
  version: number;
  /** The service (workload) name, equal to the subject's. */
  service: string;
  /** The node that holds the connections. */
  node: string;
  /** Connections held (waiting for a replica) on that node when sent. */
  held: number;
}

export function encodeActivation(a: Omit<ServiceActivation, 'version'>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ version: ACTIVATION_VERSION, service: a.service, node: a.node, held: a.held }));
}

/** Parses and checks one activation message (hostile input); a string is the reason to drop it. */
export function parseActivation(subject: string, data: Uint8Array): ServiceActivation | string {
  const parts = subject.split('.');
  const service = parts[3] ?? '';
  if (parts.length !== 5 || parts.slice(0, 3).join('.') !== 'berth.v1.service' || parts[4] !== 'activate' || dnsLabelProblem(service) !== undefined) return `subject "${subject.slice(0, 120)}" does not name a valid service`;
  if (data.length > MAX_ACTIVATION_BYTES) return `activation of ${data.length} bytes; expected at most ${MAX_ACTIVATION_BYTES}`;
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (err) {
    return `activation is not JSON: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'activation: expected a JSON object';
  const o = v as Record<string, unknown>;
  if (o['version'] !== ACTIVATION_VERSION) return `activation version ${JSON.stringify(o['version'])}; expected ${ACTIVATION_VERSION}`;
  if (o['service'] !== service) return `activation names service ${JSON.stringify(o['service'])} on the subject of service "${service}"`;
  if (typeof o['node'] !== 'string' || dnsLabelProblem(o['node']) !== undefined) return 'activation: expected node to be a node name';
  const held = o['held'];
  if (typeof held !== 'number' || !Number.isInteger(held) || held < 0) return `activation: expected held to be a whole number >= 0, got ${JSON.stringify(held)}`;
  return { version: ACTIVATION_VERSION, service, node: o['node'], held };
}
