/**
 * Load metrics from agents (`berth.v1.node.<node>.metrics`, NodeMetrics from
 * proto/berth/v1/metrics.proto, docs/internals.md) for the autoscaler.
 *
 * Hostile input like every report: the subject's node must be a DNS label
 * equal to the body's node; at most MAX_METRICS_BYTES and
 * MAX_METRICS_REPLICAS entries; a version this controller knows; container ids
 * of 64 hex characters, workload names that are DNS labels, and finite,
 * non-negative figures. A message failing any check is dropped whole.
 * Receipt time (this controller's clock) is what the window uses.
 */
import { METRICS_SUBJECT_WILDCARD, METRICS_VERSION, dnsLabelProblem, messageOf, nodeOfSubject, type Logger } from '../../lib/index.js';
import { NodeMetrics } from '../../proto/gen/berth/v1/metrics.js';
import { ParsedSubscription } from './connect.js';

export { metricsSubject, METRICS_SUBJECT_WILDCARD } from '../../lib/index.js';
export const MAX_METRICS_BYTES = 1024 * 1024;
export const MAX_METRICS_REPLICAS = 10000;

const ID = /^[0-9a-f]{64}$/;

const okFigure = (v: number): boolean => Number.isFinite(v) && v >= 0;

/** Parses and checks one message; returns a reason string when it must be dropped. */
export function parseNodeMetrics(subject: string, data: Uint8Array): NodeMetrics | string {
  const node = nodeOfSubject(subject, 'metrics');
  if (node === undefined) return `subject "${subject}" does not name a valid node`;
  if (data.length > MAX_METRICS_BYTES) return `metrics of ${data.length} bytes; expected at most ${MAX_METRICS_BYTES}`;
  let m: NodeMetrics;
  try {
    m = NodeMetrics.decode(data);
  } catch (err) {
    return `metrics do not decode: ${messageOf(err)}`;
  }
  if (m.version !== METRICS_VERSION) return `metrics version ${m.version}; expected ${METRICS_VERSION}`;
  if (m.node !== node) return `metrics name node "${m.node}" on the subject of node "${node}"`;
  if (m.replicas.length > MAX_METRICS_REPLICAS) return `metrics list ${m.replicas.length} replicas; expected at most ${MAX_METRICS_REPLICAS}`;
  for (const r of m.replicas) {
    if (!ID.test(r.containerId)) return `replica id "${r.containerId.slice(0, 80)}" is not 64 hex characters`;
    if (dnsLabelProblem(r.workload) !== undefined) return `replica ${r.containerId.slice(0, 12)} names workload "${r.workload.slice(0, 80)}", not a valid name`;
    if (![r.cpuPercent, r.memoryBytes, r.requestsPerSecond, r.connections].every(okFigure)) return `replica ${r.containerId.slice(0, 12)} has a negative or non-finite figure`;
  }
  return m;
}

export interface NatsNodeMetricsOptions {
  servers: string[];
  /** Called with each accepted message and this controller's receipt time. */
  deliver: (m: NodeMetrics, receivedMs: number) => void;
  logger?: Logger;
  name?: string;
}

/** Subscribes to every node's metrics. */
export class NatsNodeMetrics extends ParsedSubscription<NodeMetrics> {
  constructor(opts: NatsNodeMetricsOptions) {
    super({
      servers: opts.servers, subject: METRICS_SUBJECT_WILDCARD, what: 'node metrics', component: 'node-metrics',
      name: opts.name ?? 'berth-controller-metrics', parse: parseNodeMetrics, deliver: opts.deliver, ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }
}
