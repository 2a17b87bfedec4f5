/**
 * Host-gw routes: every other node's container subnet is routed through that
 * node's address (its `internal_ip`, or the host of its agent address). The
 * agent keeps them in step with the node list: `RouteSync.apply(nodes)`
 * adds, changes and deletes its own routes (marked with BERTH_ROUTE_PROTO),
 * never anyone else's. `start()` polls a NodeSource. The nodes must share a
 * link; for nodes that do not, VxlanSync (vxlan.ts, `berth agent --routing
 * vxlan`) takes its place with the same node list and the same route marker.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { cidrContains, fromGrpcError, messageOf, parseCidr, parseIpv4, pause, type Ipv4Cidr, type Logger } from '../../lib/index.js';
import { NodeServiceClient, type ListNodesResponse } from '../../proto/gen/berth/v1/controller.js';
import type { Node } from '../../proto/gen/berth/v1/types.js';
import type { NetOps } from '../sys/index.js';

export interface NodeRoute {
  node: string;
  subnet: string;
  via: string;
}

/** Where the node list comes from (the controller's NodeService.List). */
export interface NodeSource {
  listNodes(opts: { signal?: AbortSignal }): Promise<Node[]>;
}

/** The address other nodes route a node's subnet through; undefined when it has no IPv4 one. */
export function nodeRouteAddress(n: Node): string | undefined {
  const explicit = n.spec?.internalIp ?? '';
  if (explicit !== '') return parseIpv4(explicit) !== undefined ? explicit : undefined;
  const addr = n.spec?.address ?? '';
  const host = addr.slice(0, addr.lastIndexOf(':'));
  return parseIpv4(host) !== undefined ? host : undefined;
}

/** The routes a node needs to reach every other node's subnet. */
export function desiredRoutes(nodes: readonly Node[], self: string, cluster: Ipv4Cidr): NodeRoute[] {
  const out: NodeRoute[] = [];
  for (const n of nodes) {
    const name = n.spec?.name ?? '';
    const subnet = n.network?.subnet ?? '';
    if (name === self || subnet === '') continue;
    let c: Ipv4Cidr;
    try {
      c = parseCidr(subnet, 'subnet', { strict: true });
    } catch {
      continue;
    }
    if (!cidrContains(cluster, c.base)) continue;
    const via = nodeRouteAddress(n);
    if (via === undefined || via === '127.0.0.1') continue;
    out.push({ node: name, subnet, via });
  }
  return out.sort((a, b) => (a.subnet < b.subnet ? -1 : 1));
}

export interface RouteSyncOptions {
  ops: NetOps;
  logger: Logger;
  /** This node's name (its own subnet is on the bridge, not routed). */
  self: string;
  clusterCidr: string;
}

export class RouteSync {
  private readonly ops: NetOps;
  private readonly log: Logger;
  private readonly cluster: Ipv4Cidr;
  private last = '';
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly opts: RouteSyncOptions) {
    this.ops = opts.ops;
    this.log = opts.logger.child({ component: 'routes' });
    this.cluster = parseCidr(opts.clusterCidr, 'cluster-cidr', { strict: true });
  }

  /** Makes the agent's routes match `nodes`; routes that fail are logged and retried on the next call. Resolves with the routes in place. */
  apply(nodes: readonly Node[]): Promise<NodeRoute[]> {
    const run = () => this.applyNow(nodes);
    const p = this.running.then(run, run);
    this.running = p.then(() => undefined, () => undefined);
    return p;
  }

  private async applyNow(nodes: readonly Node[]): Promise<NodeRoute[]> {
    const want = desiredRoutes(nodes, this.opts.self, this.cluster);
    const have = await this.ops.listRoutes();
    const wantBy = new Map(want.map((r) => [r.subnet, r]));
    const done: NodeRoute[] = [];
    for (const h of have) {
      let inCluster = false;
      try {
        inCluster = cidrContains(this.cluster, parseCidr(h.dst.includes('/') ? h.dst : `${h.dst}/32`, 'route').base);
      } catch {
        continue;
      }
      const w = wantBy.get(h.dst);
      if (!inCluster || (w && w.via === h.gateway)) continue;
      if (!w) {
        await this.ops.deleteRoute(h.dst).catch((err: unknown) => this.log.warn('failed to delete route', { subnet: h.dst, reason: messageOf(err) }));
        this.log.info('route deleted', { subnet: h.dst, via: h.gateway });
      }
    }
    for (const w of want) {
      const cur = have.find((h) => h.dst === w.subnet);
      if (cur?.gateway === w.via) {
        done.push(w);
        continue;
      }
      try {
        await this.ops.replaceRoute(w.subnet, w.via);
        done.push(w);
        this.log.info('route set', { node: w.node, subnet: w.subnet, via: w.via });
      } catch (err) {
        this.log.warn('failed to set route', { node: w.node, subnet: w.subnet, via: w.via, reason: messageOf(err) });
      }
    }
    const summary = JSON.stringify(done);
    if (summary !== this.last) this.log.debug('routes', { routes: done.length });
    this.last = summary;
    return done;
  }

  /** Deletes every route the agent owns. */
  async clear(): Promise<void> {
    for (const r of await this.ops.listRoutes()) await this.ops.deleteRoute(r.dst);
  }

  /** Polls `source` every `intervalMs` until `signal` fires; failures are logged and retried. */
  start(source: NodeSource, intervalMs: number, signal: AbortSignal): Promise<void> {
    return (async () => {
      while (!signal.aborted) {
        try {
          await this.apply(await source.listNodes({ signal }));
        } catch (err) {
          if (!signal.aborted) this.log.warn('failed to sync routes', { reason: messageOf(err) });
        }
        await pause(intervalMs, signal);
      }
    })();
  }
}

/** A NodeSource over NodeService.List at `address`; close() releases the channel. */
export function grpcNodeSource(address: string, timeoutMs = 5000): NodeSource & { close(): void } {
  const client = new NodeServiceClient(address, credentials.createInsecure());
  return {
    listNodes(opts: { signal?: AbortSignal }): Promise<Node[]> {
      return new Promise((resolve, reject) => {
        const call = client.list({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err: ServiceError | null, res: ListNodesResponse) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(fromGrpcError(err, `list nodes at ${address}`));
          else resolve(res.nodes);
        });
        const onAbort = (): void => call.cancel();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    close: () => client.close(),
  };
}
