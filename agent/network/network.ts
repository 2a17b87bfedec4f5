/**
 * Container networks of one node, through the CNI plugins (`loopback`,
 * `bridge` + `host-local`) called per the CNI spec.
 *
 * Vocabulary
 *   mode        a container's network: "cluster" (own netns, `lo` up, `eth0`
 *               on the node bridge with an address from the node's subnet),
 *               "host" (the node's netns) or "none" (own netns, `lo` only).
 *   bridge      the per-node Linux bridge (`berth0`); its address is the
 *               subnet's `.1`, the containers' default gateway.
 *   record      `<stateDir>/containers/<id>.json`: what was made for a
 *               container (netns name, mode, address, published ports),
 *               written before the first CNI call, so that a crash can be
 *               undone and `teardown` works after an agent restart.
 *   ipam dir    `<stateDir>/ipam`: host-local's address leases.
 *
 * Lifecycle: start() loads the records and installs the node's nft table.
 * setup() -> netns created -> loopback ADD and bridge ADD side by side (address
 * read from the bridge's result) -> ports DNATed -> returned; a failure undoes
 * what was done. teardown() -> ports removed -> bridge DEL (address released)
 * -> netns deleted (no loopback DEL: that plugin keeps no state outside the
 * namespace) -> record deleted; idempotent. cleanup() (agent
 * --cleanup and tests) tears down every recorded container and removes the
 * bridge, the agent's routes, the nft table and the state dir.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  checkPublishHostIp,
  formatIpv4,
  InvalidArgumentError,
  messageOf,
  parseCidr,
  parseNetworkMode,
  type Logger,
  type NetworkMode,
  type PublishedPort,
} from '../../lib/index.js';
import type { ContainerSpec } from '../../proto/gen/berth/v1/types.js';
import type { NetOps } from '../sys/index.js';
import { ContainerNetworkError, NoSubnetError, PortInUseError } from './errors.js';
import { countDnatRules, expectedDnatRules, NFT_FAMILY, NFT_TABLE, renderTable, type PortMapping } from './nft.js';
import { MeshPortInUseError, type MeshPorts } from './services.js';

export const DEFAULT_BRIDGE = 'berth0';
export const CNI_NETWORK_NAME = 'berth';
/** The label the controller puts on every replica of a workload (its name); such containers publish through the routing mesh, not per container. */
export const WORKLOAD_LABEL = 'io.berth.workload';
const CNI_VERSION = '1.0.0';

export interface NodeNetworkOptions {
  ops: NetOps;
  logger: Logger;
  /** Directory for records and IPAM state, e.g. <agent root>/network. */
  stateDir: string;
  /** The node's container subnet ("10.244.3.0/24"); without one, "cluster" containers are refused. */
  subnet?: string;
  clusterCidr: string;
  bridge?: string;
  mtu?: number;
  /**
   * The node's DNS resolver (agent/dns NodeDns): when given, "cluster"
   * containers get the bridge's gateway as their nameserver and these search
   * domains; ensure(gateway) makes it serve there before they start.
   */
  resolver?: { ensure(address: string): Promise<void>; readonly search: string[] };
  /** The routing mesh's published ports (agent/network ServiceSync): a single container may not publish a host port a workload publishes. */
  mesh?: MeshPorts;
}

interface NetRecord {
  version: 1;
  id: string;
  mode: NetworkMode;
  netns: string;
  address: string;
  ports: PublishedPort[];
}

export interface SetupResult {
  netnsPath: string;
  ipAddress: string;
  dns?: string[];
  /** resolv.conf search domains (with `dns`). */
  dnsSearch?: string[];
  extraHosts?: [string, string][];
}

/** The netns name of a container: "berth-" and the first 40 characters of its id. */
export function netnsName(id: string): string {
  return `berth-${id.slice(0, 40)}`;
}

/** Whether a spec is a workload's replica (published ports go through the routing mesh on every node, not a per-container DNAT). */
export function isReplicaSpec(spec: ContainerSpec): boolean {
  return (spec.labels[WORKLOAD_LABEL] ?? '') !== '';
}

/** Ports of a spec as published ports (only those with a host port), checked; throws InvalidArgumentError naming the field. */
export function publishedPorts(spec: ContainerSpec): PublishedPort[] {
  const out: PublishedPort[] = [];
  spec.ports.forEach((p, i) => {
    if (p.publish === 0) return;
    const field = `spec.ports[${i}]`;
    if (!(p.publish >= 1 && p.publish <= 65535)) throw new InvalidArgumentError(`${field}.publish: expected a port from 1 to 65535, got ${p.publish}`, { field: `${field}.publish` });
    if (!(p.container >= 1 && p.container <= 65535)) throw new InvalidArgumentError(`${field}.container: expected a port from 1 to 65535, got ${p.container}`, { field: `${field}.container` });
    const protocol = p.protocol === '' ? 'tcp' : p.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp') throw new InvalidArgumentError(`${field}.protocol: expected "tcp" or "udp", got ${JSON.stringify(p.protocol)}`, { field: `${field}.protocol` });
    checkPublishHostIp(p.hostIp ?? '', `${field}.hostIp`);
    out.push({ hostIp: p.hostIp ?? '', hostPort: p.publish, containerPort: p.container, protocol });
  });
  return out;
}

function clash(a: PublishedPort, b: PublishedPort): boolean {
  return a.protocol === b.protocol && a.hostPort === b.hostPort && (a.hostIp === '' || b.hostIp === '' || a.hostIp === b.hostIp);
}

export class NodeNetwork {
  readonly bridge: string;
  private readonly ops: NetOps;
  private readonly log: Logger;
  private readonly dir: string;
  private readonly subnet: string;
  private readonly gateway: string;
  private readonly clusterCidr: string;
  private readonly mtu: number | undefined;
  private readonly resolver: NodeNetworkOptions['resolver'];
  private readonly mesh: MeshPorts | undefined;
  private readonly records = new Map<string, NetRecord>();
  /** Serializes port reservations and table writes. */
  private tableLock: Promise<unknown> = Promise.resolve();

  constructor(opts: NodeNetworkOptions) {
    this.ops = opts.ops;
    this.log = opts.logger.child({ component: 'network' });
    this.dir = opts.stateDir;
    this.bridge = opts.bridge ?? DEFAULT_BRIDGE;
    this.clusterCidr = opts.clusterCidr;
    parseCidr(opts.clusterCidr, 'cluster-cidr', { strict: true });
    this.subnet = opts.subnet ?? '';
    if (this.subnet !== '') {
      const s = parseCidr(this.subnet, 'subnet', { strict: true });
      this.gateway = formatIpv4(s.base + 1);
    } else {
      this.gateway = '';
    }
    this.mtu = opts.mtu;
    this.resolver = opts.resolver;
    this.mesh = opts.mesh;
  }

  private recordPath(id: string): string {
    return join(this.dir, 'containers', `${id}.json`);
  }

  private async writeRecord(r: NetRecord): Promise<void> {
    await mkdir(join(this.dir, 'containers'), { recursive: true, mode: 0o700 });
    const p = this.recordPath(r.id);
    await writeFile(`${p}.tmp`, JSON.stringify(r), { mode: 0o600 });
    await rename(`${p}.tmp`, p);
  }

  /** Loads the records of earlier agent processes and installs the nft table. */
  async start(): Promise<void> {
    await mkdir(join(this.dir, 'containers'), { recursive: true, mode: 0o700 });
    for (const f of await readdir(join(this.dir, 'containers'))) {
      if (!f.endsWith('.json')) continue;
      try {
        const r = JSON.parse(await readFile(join(this.dir, 'containers', f), 'utf8')) as NetRecord;
        if (r.version === 1 && `${r.id}.json` === f) this.records.set(r.id, r);
      } catch (err) {
        this.log.warn('ignoring unreadable network record', { file: f, reason: messageOf(err) });
      }
    }
    await this.withTable(async () => undefined);
    // Containers of an earlier agent process still use the resolver on the gateway.
    if (this.resolver && [...this.records.values()].some((r) => r.mode === 'cluster' && r.address !== '')) {
      await this.resolver.ensure(this.gateway).catch((err: unknown) => this.log.warn('failed to serve dns on the bridge; retrying with the next container', { address: this.gateway, reason: messageOf(err) }));
    }
  }

  /** Published ports of every container, for the table. */
  private mappings(): PortMapping[] {
    const out: PortMapping[] = [];
    for (const r of this.records.values()) {
      if (r.address === '') continue;
      for (const p of r.ports) out.push({ ...p, containerId: r.id, containerIp: r.address });
    }
    return out;
  }

  /**
   * Runs `change` under the table lock, then (unless `write` is false: the
   * published ports did not change) rewrites the table and checks that every
   * DNAT rule is in place.
   */
  private withTable<T>(change: () => Promise<T>, write = true): Promise<T> {
    const run = async (): Promise<T> => {
      const result = await change();
      if (write) await this.writeTable();
      return result;
    };
    const p = this.tableLock.then(run, run);
    this.tableLock = p.catch(() => undefined);
    return p;
  }

  private async writeTable(): Promise<void> {
    const ports = this.mappings();
    await this.ops.nftApply(renderTable({ bridge: this.bridge, subnet: this.subnet, clusterCidr: this.clusterCidr, ports }));
    const items = await this.ops.nftListTable(NFT_FAMILY, NFT_TABLE);
    const want = expectedDnatRules(ports);
    const have = items ? countDnatRules(items) : -1;
    if (have !== want) {
      throw new ContainerNetworkError('', `failed to install published ports: table "${NFT_FAMILY} ${NFT_TABLE}" has ${have < 0 ? 'no table' : `${have} DNAT rules`} after nft -f; expected ${want}`);
    }
  }

  /** The host ports ("PORT/PROTO") single containers publish on this node (a replica publishes none here), sorted. */
  hostPorts(): string[] {
    return [...new Set([...this.records.values()].flatMap((r) => r.ports.map((p) => `${p.hostPort}/${p.protocol}`)))].sort();
  }

  /** The containers with a network record (ids). */
  containers(): string[] {
    return [...this.records.keys()];
  }

  /** The recorded address of a container ("" for none). */
  addressOf(id: string): string | undefined {
    return this.records.get(id)?.address;
  }

  async setup(id: string, spec: ContainerSpec, opts: { signal?: AbortSignal } = {}): Promise<SetupResult> {
    const mode = parseNetworkMode(spec.network, 'spec.network');
    // Checked for every container; a replica's published ports are the routing mesh's (ip berth_svc), so it reserves none here.
    const checked = publishedPorts(spec);
    const ports = isReplicaSpec(spec) ? [] : checked;
    // Index in spec.ports of the i-th published port (ports without a host port are left out of `ports`).
    const at = spec.ports.flatMap((q, j) => (q.publish === 0 ? [] : [j]));
    const field = (i: number) => `spec.ports[${at[i] ?? i}].publish`;
    if (checked.length > 0 && mode !== 'cluster') {
      throw new InvalidArgumentError(`spec.ports: publishing ports needs network "cluster", got "${mode}"`, { field: 'spec.ports' });
    }
    if (mode === 'host') return { netnsPath: this.ops.nodeNetnsPath(), ipAddress: '' };
    if (mode === 'cluster' && this.subnet === '') throw new NoSubnetError();
    if (this.records.has(id)) await this.teardown(id);
    const rec: NetRecord = { version: 1, id, mode, netns: netnsName(id), address: '', ports: [] };
    // Reserve the ports first: a clash is refused before anything is made.
    await this.withTable(async () => {
      ports.forEach((p, i) => {
        const owner = this.mesh?.publishedBy(p.hostPort, p.protocol);
        if (owner !== undefined) throw new MeshPortInUseError(field(i), p.hostPort, p.protocol, owner);
        for (const other of this.records.values()) {
          const hit = other.ports.find((q) => clash(p, q));
          if (hit) throw new PortInUseError(field(i), p.hostPort, p.protocol, other.id);
        }
      });
      ports.forEach((p, i) => {
        if (ports.some((q, j) => j < i && clash(p, q))) throw new InvalidArgumentError(`${field(i)}: host port ${p.hostPort}/${p.protocol} is given twice`, { field: field(i) });
      });
      rec.ports = ports;
      this.records.set(id, rec);
      await this.writeRecord(rec);
      // No DNAT rule yet: the ports get one once the address is known.
    }, false).catch((err: unknown) => {
      // The table write failed after the reservation: forget it.
      if (this.records.get(id) === rec && rec.address === '') this.records.delete(id);
      throw err;
    });
    try {
      const path = await this.ops.createNetns(rec.netns);
      // lo and eth0 are independent: the two plugin processes run side by side (a container start
      // waits for one plugin exec fewer). Both are settled before a failure is thrown, so the undo
      // never races a plugin that is still running.
      const loopback = this.ops.cni({ plugin: 'loopback', command: 'ADD', containerId: id, netns: path, ifname: 'lo', config: this.loopbackConfig() }, opts);
      const bridge = mode === 'cluster' ? this.ops.cni({ plugin: 'bridge', command: 'ADD', containerId: id, netns: path, ifname: 'eth0', config: this.bridgeConfig() }, opts) : undefined;
      await Promise.allSettled([loopback, bridge]);
      await loopback;
      if (bridge) {
        const res = await bridge;
        const ips = (res['ips'] ?? []) as { address?: string }[];
        const addr = ips.map((i) => i.address ?? '').find((a) => a.includes('.'));
        if (!addr) throw new ContainerNetworkError(id, `failed to set up the network of container "${id}": the bridge plugin returned no IPv4 address: ${JSON.stringify(res).slice(0, 300)}`);
        rec.address = addr.split('/')[0] ?? '';
        await this.withTable(() => this.writeRecord(rec), ports.length > 0);
      }
      this.log.info('container network set up', { containerId: id, mode, address: rec.address, ports: ports.length });
      if (mode === 'cluster' && this.resolver) {
        await this.resolver.ensure(this.gateway);
        return { netnsPath: path, ipAddress: rec.address, dns: [this.gateway], dnsSearch: this.resolver.search };
      }
      return { netnsPath: path, ipAddress: rec.address };
    } catch (err) {
      this.log.warn('container network setup failed; undoing', { containerId: id, reason: messageOf(err) });
      await this.teardown(id).catch((e: unknown) => this.log.warn('failed to undo container network', { containerId: id, reason: messageOf(e) }));
      throw err;
    }
  }

  async teardown(id: string): Promise<void> {
    const rec = this.records.get(id);
    const name = rec?.netns ?? netnsName(id);
    const problems: string[] = [];
    if (rec && rec.ports.length > 0 && rec.address !== '') {
      try {
        await this.withTable(async () => {
          rec.ports = [];
        });
      } catch (err) {
        problems.push(`published ports: ${messageOf(err)}`);
      }
    }
    const path = `/run/netns/${name}`;
    const exists = this.ops.netnsExists(name);
    if (!rec || rec.mode === 'cluster') {
      // DEL is idempotent and also works without the namespace: host-local releases the address by container id.
      if (this.subnet !== '') {
        await this.ops.cni({ plugin: 'bridge', command: 'DEL', containerId: id, netns: exists ? path : '', ifname: 'eth0', config: this.bridgeConfig() })
          .catch((err: unknown) => problems.push(`bridge DEL: ${messageOf(err)}`));
      }
    }
    if (exists) {
      // No loopback DEL: the loopback plugin keeps no state outside the namespace (its DEL only sets
      // lo down), and the namespace is deleted here; that saves a plugin exec per container removal.
      await this.ops.deleteNetns(name).catch((err: unknown) => problems.push(`netns: ${messageOf(err)}`));
    }
    if (problems.length > 0) {
      throw new ContainerNetworkError(id, `failed to tear down the network of container "${id}": ${problems.join('; ')}`);
    }
    await rm(this.recordPath(id), { force: true });
    if (this.records.get(id) === rec) this.records.delete(id);
    if (rec) this.log.info('container network torn down', { containerId: id });
  }

  /**
   * Removes everything this node's networking made: every recorded container
   * network, the bridge, the agent's routes, the nft table and the state dir.
   */
  async cleanup(): Promise<void> {
    const problems: string[] = [];
    for (const id of [...this.records.keys()]) {
      await this.teardown(id).catch((err: unknown) => problems.push(messageOf(err)));
    }
    for (const r of await this.ops.listRoutes().catch(() => [])) {
      await this.ops.deleteRoute(r.dst).catch((err: unknown) => problems.push(messageOf(err)));
    }
    await this.ops.nftDeleteTable(NFT_FAMILY, NFT_TABLE).catch((err: unknown) => problems.push(messageOf(err)));
    await this.ops.deleteLink(this.bridge).catch((err: unknown) => problems.push(messageOf(err)));
    if (problems.length > 0) throw new ContainerNetworkError('', `failed to clean up the node network: ${problems.join('; ')}`);
    await rm(this.dir, { recursive: true, force: true });
    this.log.info('node network cleaned up', { bridge: this.bridge });
  }

  private loopbackConfig(): Record<string, unknown> {
    return { cniVersion: CNI_VERSION, name: CNI_NETWORK_NAME, type: 'loopback' };
  }

  private bridgeConfig(): Record<string, unknown> {
    return {
      cniVersion: CNI_VERSION,
      name: CNI_NETWORK_NAME,
      type: 'bridge',
      bridge: this.bridge,
      isGateway: true,
      ipMasq: false,
      hairpinMode: true,
      ...(this.mtu !== undefined ? { mtu: this.mtu } : {}),
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: this.subnet, gateway: this.gateway }]],
        routes: [{ dst: '0.0.0.0/0' }],
        dataDir: join(this.dir, 'ipam'),
      },
    };
  }
}
