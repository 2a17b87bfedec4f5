/**
 * Services: the view of every workload with ports as a service — its
 * virtual IP (controller/store EtcdVipStore), its ports, and its endpoints
 * (the replicas the nodes report, each with address, node and readiness).
 *
 * Vocabulary
 *   endpoint  one replica of the workload as a node reported it.
 *   ready     the endpoint runs, is healthy or has no health check, has a
 *             cluster address, and its node is Ready. Agents send traffic
 *             for the virtual IP only to ready endpoints.
 *
 * Every List/Get first brings the assignments in line with the workloads
 * (allocating addresses for new workloads with ports, releasing those of
 * deleted ones); agents call List every second, so a new workload gets its
 * address within about a second, and a deleted one's is released as soon.
 */
import { NotFoundError, messageOf, pause, type Logger } from '../../lib/index.js';
import type { Service, ServiceEndpoint, ServicePort } from '../../proto/gen/berth/v1/services.js';
import { ContainerState, NodeState, containerStateToJSON, type Container, type Workload } from '../../proto/gen/berth/v1/types.js';
import type { CallOptions } from '../store/index.js';
import type { TrafficFigures } from './traffic.js';

/** What the directory needs from the address store. */
export interface VipAssignments {
  readonly range: { base: number; bits: number };
  list(opts?: CallOptions): Promise<Map<string, string>>;
  sync(assigned: ReadonlyMap<string, string>, workloads: ReadonlySet<string>, opts?: CallOptions): Promise<Map<string, string>>;
}

export interface ServiceDirectoryDeps {
  vips: VipAssignments;
  workloads: { listWorkloads(selector?: undefined, opts?: CallOptions): Promise<Workload[]> };
  /** Containers as the nodes report them. */
  observed: { nodeNames(): string[]; containers(node: string): Container[] };
  /** The live state of a node. */
  nodeState(node: string): NodeState;
  /** Per-endpoint traffic from the nodes (controller/services TrafficTable); figures are 0 without it. */
  traffic?: TrafficFigures;
  logger: Logger;
}

/** The ports of a workload as service ports (sorted by port, then protocol). */
export function servicePorts(w: Workload): ServicePort[] {
  return (w.spec?.ports ?? [])
    .filter((p) => p.container >= 1 && p.container <= 65535)
    .map((p) => ({ name: p.name, port: p.container, protocol: p.protocol === 'udp' ? 'udp' : 'tcp', targetPort: p.container, published: p.publish }))
    .sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
}

/** The endpoints of workload `name` among `containers` (sorted by node, then name), with the traffic figures their nodes reported (0 when none). */
export function serviceEndpoints(name: string, containers: readonly Container[], nodeState: (node: string) => NodeState, traffic?: TrafficFigures): ServiceEndpoint[] {
  return containers
    .filter((c) => c.workload === name)
    .map((c) => {
      const state = c.status?.state ?? ContainerState.CONTAINER_STATE_UNSPECIFIED;
      const health = c.status?.health ?? '';
      const address = c.status?.ipAddress ?? '';
      const draining = c.status?.draining ?? false;
      const ready = state === ContainerState.CONTAINER_STATE_RUNNING && (health === '' || health === 'healthy') && address !== '' && !draining && nodeState(c.node) === NodeState.NODE_STATE_READY;
      const t = traffic?.figures(c.node, c.id);
      return {
        containerId: c.id, containerName: c.name, node: c.node, address, ready, state: containerStateToJSON(state), health, draining,
        requestsPerSecond: t?.requestsPerSecond ?? 0, connectionsPerSecond: t?.connectionsPerSecond ?? 0, openConnections: t?.openConnections ?? 0,
      };
    })
    .sort((a, b) => a.node.localeCompare(b.node) || a.containerName.localeCompare(b.containerName));
}

export class ServiceDirectory {
  private readonly logger: Logger;

  constructor(private readonly deps: ServiceDirectoryDeps) {
    this.logger = deps.logger.child({ component: 'services' });
  }

  /** Every service, sorted by name, after bringing the address assignments in line with the workloads. */
  async list(opts?: CallOptions): Promise<Service[]> {
    // Assignments first, then workloads: a workload created in between is never released.
    const assigned = await this.deps.vips.list(opts);
    const workloads = (await this.deps.workloads.listWorkloads(undefined, opts)).filter((w) => servicePorts(w).length > 0 && w.metadata?.name);
    const names = new Set(workloads.map((w) => w.metadata?.name ?? ''));
    const vips = await this.deps.vips.sync(assigned, names, opts);
    for (const [n, ip] of assigned) if (!names.has(n)) this.logger.info('service address released', { workload: n, vip: ip });
    for (const [n, ip] of vips) if (!assigned.has(n)) this.logger.info('service address allocated', { workload: n, vip: ip });
    const containers = this.deps.observed.nodeNames().flatMap((node) => this.deps.observed.containers(node));
    return workloads
      .map((w) => {
        const name = w.metadata?.name ?? '';
        return {
          name, virtualIp: vips.get(name) ?? '', ports: servicePorts(w), endpoints: serviceEndpoints(name, containers, (n) => this.deps.nodeState(n), this.deps.traffic),
          scaleToZero: w.spec?.autoscale?.scaleToZeroIdleSeconds !== undefined && w.spec.autoscale.min === 0,
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Brings the assignments in line every `intervalMs` until `signal` fires,
   * so that a deleted workload's address is released even when nobody lists
   * services; failures are logged and retried.
   */
  async run(signal: AbortSignal, intervalMs = 2000): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.list({ signal });
      } catch (err) {
        if (!signal.aborted) this.logger.warn('failed to sync service addresses', { reason: messageOf(err) });
      }
      await pause(intervalMs, signal);
    }
  }

  async get(name: string, opts?: CallOptions): Promise<Service> {
    const s = (await this.list(opts)).find((x) => x.name === name);
    if (!s) throw new NotFoundError('service', name);
    return s;
  }
}
