/**
 * VXLAN routing: the alternative to host-gw routes (routes.ts) for nodes that
 * do not share a link. Container traffic to another node's subnet is carried
 * in UDP between the nodes' underlay addresses, so only those addresses need
 * to route between the hosts.
 *
 * Vocabulary
 *   device      one VXLAN device per node (`berth.vx`): VNI `vni`, UDP port
 *               `port`, `local` = the node's underlay address, `nolearning`
 *               (every peer is programmed, nothing is learnt or flooded),
 *               MTU 1450 (1500 minus the 50 bytes of VXLAN over IPv4).
 *   underlay    the address other nodes send a node's VXLAN packets to: its
 *               `internal_ip`, or the host of its agent address
 *               (nodeRouteAddress, the same one host-gw routes through).
 *   VTEP        the device's own overlay address and MAC, both derived from
 *               the node's subnet so every node can compute every peer's
 *               without a new node-record field: the subnet's first address
 *               (`10.244.3.0`, as /32 on the device) and the MAC
 *               `0e:be:` + the four bytes of that address (locally
 *               administered, unicast; distinct from the `0a:58:` MACs the
 *               CNI bridge gives containers).
 *   peer        another node with a subnet in the cluster range and an
 *               underlay address: an FDB entry (its VTEP MAC -> its
 *               underlay), a permanent neighbour entry (its VTEP address ->
 *               its VTEP MAC) and a route (its subnet via its VTEP address,
 *               `onlink`, over the device, proto BERTH_ROUTE_PROTO).
 *
 * Lifecycle: VxlanSync.apply(nodes) re-reads the device, its FDB and
 * neighbour entries and the agent's routes and corrects all of it (creating
 * or re-creating the device when its VNI, local address or port differ,
 * removing the entries and routes of nodes that left); each failed step is
 * logged and retried on the next call. start() polls a NodeSource like
 * RouteSync; clear() (agent --cleanup) deletes the device (the kernel drops
 * its entries and routes with it) and any agent route left in the cluster
 * range.
 */
import { cidrContains, FailedPreconditionError, formatIpv4, InternalError, InvalidArgumentError, messageOf, parseCidr, pause, type Ipv4Cidr, type Logger } from '../../lib/index.js';
import type { Node } from '../../proto/gen/berth/v1/types.js';
import type { FdbEntry, IpRoute, NeighbourEntry, NetOps, VxlanOps } from '../sys/index.js';
import { desiredRoutes, nodeRouteAddress, type NodeSource } from './routes.js';

export const ROUTING_MODES = ['host-gw', 'vxlan'] as const;
/** How the agent reaches other nodes' container subnets. */
export type RoutingMode = (typeof ROUTING_MODES)[number];

export const DEFAULT_VXLAN_DEVICE = 'berth.vx';
/** The IANA VXLAN port. */
export const DEFAULT_VXLAN_PORT = 4789;
export const DEFAULT_VXLAN_VNI = 1;
/** MTU of the VXLAN device and of the containers in vxlan mode: 1500 minus 50 bytes of outer IPv4, UDP and VXLAN headers. */
export const VXLAN_MTU = 1450;

/** Checks a routing mode setting; throws InvalidArgumentError naming `field` and the allowed values. */
export function parseRoutingMode(raw: string, field = 'routing'): RoutingMode {
  const v = raw.trim();
  if (!(ROUTING_MODES as readonly string[]).includes(v)) {
    throw new InvalidArgumentError(`${field}: expected one of ${ROUTING_MODES.map((m) => `"${m}"`).join(', ')}, got ${JSON.stringify(raw)}`, { field });
  }
  return v as RoutingMode;
}

/** Checks a VNI setting (1 to 16777215). */
export function parseVni(raw: string, field = 'vxlan-id'): number {
  const n = /^\d{1,8}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!(n >= 1 && n <= 16_777_215)) throw new InvalidArgumentError(`${field}: expected a VXLAN network identifier from 1 to 16777215, got ${JSON.stringify(raw)}`, { field });
  return n;
}

/** Checks a UDP port setting (1 to 65535). */
export function parseUdpPort(raw: string, field = 'vxlan-port'): number {
  const n = /^\d{1,5}$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!(n >= 1 && n <= 65_535)) throw new InvalidArgumentError(`${field}: expected a UDP port from 1 to 65535, got ${JSON.stringify(raw)}`, { field });
  return n;
}

/** The VTEP address of a node with `subnet`: the subnet's first address. */
export function vtepAddress(subnet: string): string {
  return formatIpv4(parseCidr(subnet, 'subnet', { strict: true }).base);
}

/** The VTEP MAC of a node with `subnet`: 0e:be: and the four bytes of its VTEP address. */
export function vtepMac(subnet: string): string {
  const base = parseCidr(subnet, 'subnet', { strict: true }).base;
  const bytes = [24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256);
  return ['0e', 'be', ...bytes.map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export interface VxlanPeer {
  node: string;
  subnet: string;
  /** Where its VXLAN packets go. */
  underlay: string;
  vtep: string;
  mac: string;
}

/** The peers a node programs: every other node with a subnet in the cluster range and an underlay address (not loopback). */
export function desiredPeers(nodes: readonly Node[], self: string, cluster: Ipv4Cidr): VxlanPeer[] {
  return desiredRoutes(nodes, self, cluster).map((r) => ({ node: r.node, subnet: r.subnet, underlay: r.via, vtep: vtepAddress(r.subnet), mac: vtepMac(r.subnet) }));
}

/** What the node has on and for its device. */
export interface VxlanState {
  fdb: FdbEntry[];
  neighbours: NeighbourEntry[];
  /** Agent-owned routes (all of them; only those in the cluster range are considered). */
  routes: IpRoute[];
}

/** The changes that make a VxlanState match the peers. */
export interface VxlanPlan {
  deleteRoutes: string[];
  deleteNeighbours: string[];
  deleteFdb: FdbEntry[];
  setFdb: FdbEntry[];
  setNeighbours: { address: string; mac: string }[];
  setRoutes: { dst: string; gateway: string }[];
}

function inCluster(cluster: Ipv4Cidr, dst: string): boolean {
  try {
    return cidrContains(cluster, parseCidr(dst.includes('/') ? dst : `${dst}/32`, 'route').base);
  } catch {
    return false;
  }
}

/**
 * Diffs the state against the peers (pure). Entries of the device that no
 * peer wants are deleted (neighbours only when permanent: the kernel's own
 * are left alone); agent routes in the cluster range that are not a peer's
 * are deleted; missing or different entries and routes are set.
 */
export function planVxlan(peers: readonly VxlanPeer[], have: VxlanState, device: string, cluster: Ipv4Cidr): VxlanPlan {
  const plan: VxlanPlan = { deleteRoutes: [], deleteNeighbours: [], deleteFdb: [], setFdb: [], setNeighbours: [], setRoutes: [] };
  const bySubnet = new Map(peers.map((p) => [p.subnet, p]));
  const byVtep = new Map(peers.map((p) => [p.vtep, p]));
  const byMac = new Map(peers.map((p) => [p.mac, p]));
  for (const r of have.routes) {
    if (!inCluster(cluster, r.dst)) continue;
    const p = bySubnet.get(r.dst);
    if (!p) plan.deleteRoutes.push(r.dst);
  }
  for (const n of have.neighbours) {
    const p = byVtep.get(n.address);
    if (!p && n.permanent) plan.deleteNeighbours.push(n.address);
  }
  for (const f of have.fdb) {
    const p = byMac.get(f.mac);
    if (!p || p.underlay !== f.dst) plan.deleteFdb.push(f);
  }
  for (const p of peers) {
    if (!have.fdb.some((f) => f.mac === p.mac && f.dst === p.underlay)) plan.setFdb.push({ mac: p.mac, dst: p.underlay });
    if (!have.neighbours.some((n) => n.address === p.vtep && n.mac === p.mac && n.permanent)) plan.setNeighbours.push({ address: p.vtep, mac: p.mac });
    if (!have.routes.some((r) => r.dst === p.subnet && r.gateway === p.vtep && r.dev === device)) plan.setRoutes.push({ dst: p.subnet, gateway: p.vtep });
  }
  return plan;
}

/** True when the plan changes nothing. */
export function planIsEmpty(plan: VxlanPlan): boolean {
  return Object.values(plan).every((l: unknown[]) => l.length === 0);
}

export interface VxlanSyncOptions {
  ops: NetOps & VxlanOps;
  logger: Logger;
  /** This node's name: its own record gives the device's local address and VTEP. */
  self: string;
  clusterCidr: string;
  vni?: number;
  port?: number;
  device?: string;
  mtu?: number;
}

/** Keeps the node's VXLAN device, FDB, neighbour entries and routes in step with the node list. */
export class VxlanSync {
  readonly device: string;
  readonly vni: number;
  readonly port: number;
  readonly mtu: number;
  private readonly ops: NetOps & VxlanOps;
  private readonly log: Logger;
  private readonly cluster: Ipv4Cidr;
  private lastProblem = '';
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly opts: VxlanSyncOptions) {
    this.ops = opts.ops;
    this.log = opts.logger.child({ component: 'vxlan' });
    this.cluster = parseCidr(opts.clusterCidr, 'cluster-cidr', { strict: true });
    this.device = opts.device ?? DEFAULT_VXLAN_DEVICE;
    this.vni = opts.vni ?? DEFAULT_VXLAN_VNI;
    this.port = opts.port ?? DEFAULT_VXLAN_PORT;
    this.mtu = opts.mtu ?? VXLAN_MTU;
    parseVni(String(this.vni));
    parseUdpPort(String(this.port));
  }

  /**
   * Makes the device and its peers match `nodes`; failed steps are logged
   * and retried on the next call. Resolves with the peers fully in place
   * (none while this node's own record has no subnet or underlay address).
   */
  apply(nodes: readonly Node[]): Promise<VxlanPeer[]> {
    const run = () => this.applyNow(nodes);
    const p = this.running.then(run, run);
    this.running = p.then(() => undefined, () => undefined);
    return p;
  }

  private problem(text: string, fields: Record<string, unknown>): void {
    // Said once per distinct problem, not every poll.
    if (text !== this.lastProblem) this.log.warn(text, fields);
    this.lastProblem = text;
  }

  private async applyNow(nodes: readonly Node[]): Promise<VxlanPeer[]> {
    const me = nodes.find((n) => n.spec?.name === this.opts.self);
    const subnet = me?.network?.subnet ?? '';
    const local = me ? nodeRouteAddress(me) : undefined;
    if (!me || subnet === '' || local === undefined || local === '127.0.0.1') {
      this.problem('vxlan waits for this node\'s subnet and underlay address in the node list', { node: this.opts.self, subnet, underlay: local ?? '' });
      return [];
    }
    let vtep: string;
    let mac: string;
    try {
      vtep = vtepAddress(subnet);
      mac = vtepMac(subnet);
    } catch (err) {
      this.problem('vxlan cannot use this node\'s subnet', { subnet, reason: messageOf(err) });
      return [];
    }
    await this.ensureDevice(local, mac, vtep);
    const peers = desiredPeers(nodes, this.opts.self, this.cluster);
    const [fdb, neighbours, routes] = await Promise.all([this.ops.listFdb(this.device), this.ops.listNeighbours(this.device), this.ops.listRoutes()]);
    const plan = planVxlan(peers, { fdb, neighbours, routes }, this.device, this.cluster);
    const failed = new Set<string>();
    const attempt = async (what: string, fields: Record<string, unknown>, fn: () => Promise<void>, peer?: string): Promise<void> => {
      try {
        await fn();
        this.log.info(what, fields);
      } catch (err) {
        if (peer !== undefined) failed.add(peer);
        this.log.warn(`failed: ${what}`, { ...fields, reason: messageOf(err) });
      }
    };
    const peerOf = (pred: (p: VxlanPeer) => boolean): string | undefined => peers.find(pred)?.subnet;
    // Removals first (route, then neighbour, then FDB), then additions in the other order.
    for (const dst of plan.deleteRoutes) await attempt('vxlan route deleted', { subnet: dst }, () => this.ops.deleteRoute(dst));
    for (const a of plan.deleteNeighbours) await attempt('vxlan neighbour deleted', { address: a }, () => this.ops.deleteNeighbour(this.device, a));
    for (const f of plan.deleteFdb) await attempt('vxlan fdb entry deleted', { mac: f.mac, dst: f.dst }, () => this.ops.deleteFdb(this.device, f), peerOf((p) => p.mac === f.mac));
    for (const f of plan.setFdb) await attempt('vxlan fdb entry set', { mac: f.mac, dst: f.dst }, () => this.ops.replaceFdb(this.device, f), peerOf((p) => p.mac === f.mac));
    for (const n of plan.setNeighbours) await attempt('vxlan neighbour set', { address: n.address, mac: n.mac }, () => this.ops.replaceNeighbour(this.device, n.address, n.mac), peerOf((p) => p.vtep === n.address));
    for (const r of plan.setRoutes) await attempt('vxlan route set', { subnet: r.dst, via: r.gateway, dev: this.device }, () => this.ops.replaceRouteOnlink(r.dst, r.gateway, this.device), r.dst);
    this.lastProblem = '';
    return peers.filter((p) => !failed.has(p.subnet));
  }

  /** Creates the device, or re-creates it when its VNI, local address, port or learning differ; then MTU, MAC, up and the VTEP address. */
  private async ensureDevice(local: string, mac: string, vtep: string): Promise<void> {
    let link = await this.ops.getVxlan(this.device);
    if (link && link.kind !== 'vxlan') {
      throw new FailedPreconditionError(`failed to set up vxlan: link "${this.device}" exists and is a "${link.kind || 'plain'}" link, not a VXLAN device; remove it or choose another node netns`);
    }
    if (link && (link.vni !== this.vni || link.local !== local || link.port !== this.port || link.learning)) {
      this.log.info('vxlan device re-created', { device: this.device, vni: link.vni, local: link.local, port: link.port, wantVni: this.vni, wantLocal: local, wantPort: this.port });
      await this.ops.deleteLink(this.device);
      link = undefined;
    }
    if (!link) {
      await this.ops.createVxlan({ name: this.device, vni: this.vni, local, port: this.port, mtu: this.mtu, mac });
      this.log.info('vxlan device created', { device: this.device, vni: this.vni, local, port: this.port, mtu: this.mtu, mac });
      link = await this.ops.getVxlan(this.device);
      if (!link) throw new InternalError(`failed to set up vxlan: link "${this.device}" is missing right after it was created`);
    } else if (link.mtu !== this.mtu || link.mac !== mac || !link.up) {
      await this.ops.setLink(this.device, { mtu: this.mtu, mac });
    }
    const want = `${vtep}/32`;
    for (const a of link.addresses) if (a !== want) await this.ops.deleteAddress(this.device, a);
    if (!link.addresses.includes(want)) await this.ops.addAddress(this.device, want);
  }

  /** Deletes the device (its entries and routes go with it) and every agent route left in the cluster range. */
  async clear(): Promise<void> {
    await this.ops.deleteLink(this.device);
    for (const r of await this.ops.listRoutes()) {
      if (inCluster(this.cluster, r.dst)) await this.ops.deleteRoute(r.dst);
    }
  }

  /** Polls `source` every `intervalMs` until `signal` fires; failures are logged and retried. */
  start(source: NodeSource, intervalMs: number, signal: AbortSignal): Promise<void> {
    return (async () => {
      while (!signal.aborted) {
        try {
          await this.apply(await source.listNodes({ signal }));
        } catch (err) {
          if (!signal.aborted) this.problem('failed to sync vxlan', { reason: messageOf(err) });
        }
        await pause(intervalMs, signal);
      }
    })();
  }
}
