/**
 * Per-endpoint traffic figures from the agents (`berth.v1.node.<node>.traffic`,
 * NodeTraffic from proto/berth/v1/traffic.proto, every 2 s; docs/internals.md),
 * kept for ServiceDirectory to show per service endpoint.
 *
 * Vocabulary
 *   figures  requests per second, new connections per second and open
 *            connections of one endpoint (container), as its node counted them.
 *   stale    a container whose node has not reported it for `maxAgeMs`
 *            (default 6 s: three missed reports); its figures are dropped.
 *
 * Hostile input like every report: the subject's node must be a DNS label
 * equal to the body's node; at most MAX_TRAFFIC_BYTES and
 * MAX_TRAFFIC_ENDPOINTS entries; a version this controller knows; container
 * ids of 64 hex characters, workload names that are DNS labels, IPv4
 * addresses, and finite, non-negative figures. A message failing any check
 * is dropped whole. Receipt time (this controller's clock) decides staleness.
 */
import { TRAFFIC_SUBJECT_WILDCARD, TRAFFIC_VERSION, dnsLabelProblem, messageOf, nodeOfSubject, parseIpv4, type Logger } from '../../lib/index.js';
import { NodeTraffic } from '../../proto/gen/berth/v1/traffic.js';
import { ParsedSubscription } from '../nodes/index.js';

export const MAX_TRAFFIC_BYTES = 1024 * 1024;
export const MAX_TRAFFIC_ENDPOINTS = 10000;
/** Figures older than this (receipt time) are dropped. */
export const TRAFFIC_MAX_AGE_MS = 6000;

const ID = /^[0-9a-f]{64}$/;
const okFigure = (v: number): boolean => Number.isFinite(v) && v >= 0;

/** Parses and checks one message; returns a reason string when it must be dropped. */
export function parseNodeTraffic(subject: string, data: Uint8Array): NodeTraffic | string {
  const node = nodeOfSubject(subject, 'traffic');
  if (node === undefined) return `subject "${subject.slice(0, 200)}" does not name a valid node`;
  if (data.length > MAX_TRAFFIC_BYTES) return `traffic report of ${data.length} bytes; expected at most ${MAX_TRAFFIC_BYTES}`;
  let m: NodeTraffic;
  try {
    m = NodeTraffic.decode(data);
  } catch (err) {
    return `traffic report does not decode: ${messageOf(err)}`;
  }
  if (m.version !== TRAFFIC_VERSION) return `traffic report version ${m.version}; expected ${TRAFFIC_VERSION}`;
  if (m.node !== node) return `traffic report names node "${m.node.slice(0, 80)}" on the subject of node "${node}"`;
  if (m.endpoints.length > MAX_TRAFFIC_ENDPOINTS) return `traffic report lists ${m.endpoints.length} endpoints; expected at most ${MAX_TRAFFIC_ENDPOINTS}`;
  for (const e of m.endpoints) {
    if (!ID.test(e.containerId)) return `endpoint id "${e.containerId.slice(0, 80)}" is not 64 hex characters`;
    if (dnsLabelProblem(e.workload) !== undefined) return `endpoint ${e.containerId.slice(0, 12)} names workload "${e.workload.slice(0, 80)}", not a valid name`;
    if (parseIpv4(e.address) === undefined) return `endpoint ${e.containerId.slice(0, 12)} has address "${e.address.slice(0, 80)}", expected an IPv4 address`;
    if (![e.requestsPerSecond, e.connectionsPerSecond, e.openConnections].every(okFigure)) return `endpoint ${e.containerId.slice(0, 12)} has a negative or non-finite figure`;
  }
  return m;
}

/** One endpoint's figures as the directory shows them. */
export interface EndpointFigures {
  requestsPerSecond: number;
  connectionsPerSecond: number;
  openConnections: number;
}

/** Where ServiceDirectory reads endpoint figures from. */
export interface TrafficFigures {
  /** The newest figures of a container from `node`, or undefined when none arrived within the max age. */
  figures(node: string, containerId: string): EndpointFigures | undefined;
}

interface Entry extends EndpointFigures {
  node: string;
  receivedMs: number;
}

/** The newest report per container, dropped after `maxAgeMs` without one. */
export class TrafficTable implements TrafficFigures {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly maxAgeMs: number;

  constructor(opts: { maxAgeMs?: number; now?: () => number } = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? TRAFFIC_MAX_AGE_MS;
    this.now = opts.now ?? Date.now;
  }

  /** Takes one accepted report: its endpoints replace what the table held for them; the node's endpoints it no longer lists are dropped. */
  ingest(m: NodeTraffic, receivedMs: number = this.now()): void {
    const listed = new Set(m.endpoints.map((e) => e.containerId));
    for (const [id, e] of this.entries) if (e.node === m.node && !listed.has(id)) this.entries.delete(id);
    for (const e of m.endpoints) {
      this.entries.set(e.containerId, {
        node: m.node, receivedMs, requestsPerSecond: e.requestsPerSecond, connectionsPerSecond: e.connectionsPerSecond, openConnections: e.openConnections,
      });
    }
    this.prune();
  }

  figures(node: string, containerId: string): EndpointFigures | undefined {
    const e = this.entries.get(containerId);
    if (!e || e.node !== node) return undefined;
    if (this.now() - e.receivedMs > this.maxAgeMs) {
      this.entries.delete(containerId);
      return undefined;
    }
    return { requestsPerSecond: e.requestsPerSecond, connectionsPerSecond: e.connectionsPerSecond, openConnections: e.openConnections };
  }

  /** Containers with figures (stale ones included until pruned). */
  get size(): number {
    return this.entries.size;
  }

  private prune(): void {
    const limit = this.now() - this.maxAgeMs;
    for (const [id, e] of this.entries) if (e.receivedMs < limit) this.entries.delete(id);
  }
}

export interface NatsNodeTrafficOptions {
  servers: string[];
  /** Called with each accepted report and this controller's receipt time. */
  deliver: (m: NodeTraffic, receivedMs: number) => void;
  logger?: Logger;
  name?: string;
}

/** Subscribes to every node's traffic reports (the controller's NATS connection helpers in controller/nodes). */
export class NatsNodeTraffic extends ParsedSubscription<NodeTraffic> {
  constructor(opts: NatsNodeTrafficOptions) {
    super({
      servers: opts.servers, subject: TRAFFIC_SUBJECT_WILDCARD, what: 'node traffic', component: 'node-traffic',
      name: opts.name ?? 'berth-controller-traffic', parse: parseNodeTraffic, deliver: opts.deliver, ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }
}
