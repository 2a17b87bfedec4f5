/**
 * Observed state: which containers each agent says it has, from the protobuf
 * ContainerReport messages agents publish on `berth.v1.node.<node>.containers`
 * (docs/internals.md).
 *
 * Vocabulary
 * - full report: lists every container on the node; it replaces what was known.
 * - delta: lists only containers that changed, plus ids removed; applied on top.
 * - synced: a node is synced once a full report arrived since this controller
 *   started; before that, "not reported" does not mean "not there".
 *
 * Reports are hostile input: the subject's node must be a DNS label equal to
 * the body's node, the body at most MAX_REPORT_BYTES and MAX_REPORT_CONTAINERS
 * entries, every container id 64 hex characters and its `node` equal to the
 * reporting node. A report failing any check is dropped whole and counted.
 */
import { CONTAINERS_SUBJECT_WILDCARD, messageOf, nodeOfSubject, type Logger } from '../../lib/index.js';
import { ParsedSubscription } from './connect.js';
import { ContainerReport } from '../../proto/gen/berth/v1/status.js';
import type { Container } from '../../proto/gen/berth/v1/types.js';

export { containersSubject, CONTAINERS_SUBJECT_WILDCARD } from '../../lib/index.js';
/** Largest report accepted, in bytes (NATS' default max payload). */
export const MAX_REPORT_BYTES = 1024 * 1024;
/** Most containers (plus removed ids) in one report. */
export const MAX_REPORT_CONTAINERS = 10000;

const ID = /^[0-9a-f]{64}$/;

/** Parses and checks one report; returns a reason string when it must be dropped. */
export function parseContainerReport(subject: string, data: Uint8Array): { node: string; report: ContainerReport } | string {
  const node = nodeOfSubject(subject, 'containers');
  if (node === undefined) return `subject "${subject}" does not name a valid node`;
  if (data.length > MAX_REPORT_BYTES) return `report of ${data.length} bytes; expected at most ${MAX_REPORT_BYTES}`;
  let report: ContainerReport;
  try {
    report = ContainerReport.decode(data);
  } catch (err) {
    return `report does not decode: ${messageOf(err)}`;
  }
  if (report.node !== node) return `report names node "${report.node}" on the subject of node "${node}"`;
  if (report.containers.length + report.removed.length > MAX_REPORT_CONTAINERS) {
    return `report lists ${report.containers.length + report.removed.length} containers; expected at most ${MAX_REPORT_CONTAINERS}`;
  }
  for (const c of report.containers) {
    if (!ID.test(c.id)) return `report lists container id "${c.id.slice(0, 80)}"; expected 64 hex characters`;
    if (c.node !== '' && c.node !== node) return `report of node "${node}" lists container "${c.id}" of node "${c.node}"`;
  }
  for (const id of report.removed) if (!ID.test(id)) return `report removes container id "${id.slice(0, 80)}"; expected 64 hex characters`;
  return { node, report };
}

interface NodeView {
  containers: Map<string, Container>;
  /** A full report arrived since start. */
  synced: boolean;
  lastReportUnixMs: number;
}

/** The in-memory observed state of every node. Synchronous; no I/O. */
export class ObservedState {
  private readonly nodes = new Map<string, NodeView>();
  private readonly listeners = new Set<(node: string) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Applies one checked report: a full report replaces the node's view, a delta updates it. */
  apply(node: string, report: ContainerReport): void {
    let view = this.nodes.get(node);
    if (!view) this.nodes.set(node, (view = { containers: new Map(), synced: false, lastReportUnixMs: 0 }));
    if (report.full) {
      view.containers.clear();
      view.synced = true;
    }
    for (const c of report.containers) view.containers.set(c.id, { ...c, node });
    for (const id of report.removed) view.containers.delete(id);
    view.lastReportUnixMs = this.now();
    for (const fn of this.listeners) fn(node);
  }

  /** Drops one container from a node's view (its removal was confirmed by the agent's answer). */
  forget(node: string, id: string): void {
    this.nodes.get(node)?.containers.delete(id);
  }

  /** Containers a node reported (empty when never heard from). */
  containers(node: string): Container[] {
    return [...(this.nodes.get(node)?.containers.values() ?? [])];
  }

  get(node: string, id: string): Container | undefined {
    return this.nodes.get(node)?.containers.get(id);
  }

  /** Finds a container by id on any node. */
  find(id: string): Container | undefined {
    for (const v of this.nodes.values()) {
      const c = v.containers.get(id);
      if (c) return c;
    }
    return undefined;
  }

  /** True once a full report from the node arrived since start. */
  synced(node: string): boolean {
    return this.nodes.get(node)?.synced ?? false;
  }

  nodeNames(): string[] {
    return [...this.nodes.keys()];
  }

  /** Calls `fn(node)` after every applied report; returns an unsubscribe function. */
  onChange(fn: (node: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

export interface NatsContainerReportsOptions {
  servers: string[];
  observed: ObservedState;
  logger?: Logger;
  name?: string;
}

/** Subscribes to container reports and feeds them into an ObservedState. */
export class NatsContainerReports extends ParsedSubscription<{ node: string; report: ContainerReport }> {
  constructor(opts: NatsContainerReportsOptions) {
    super({
      servers: opts.servers, subject: CONTAINERS_SUBJECT_WILDCARD, what: 'container report', component: 'container-reports',
      name: opts.name ?? 'berth-controller-reports', parse: parseContainerReport, deliver: (p) => opts.observed.apply(p.node, p.report), ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }
}
