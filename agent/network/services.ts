/**
 * Service load balancing on the node: one nftables table of its own,
 * `ip berth_svc` (beside the published ports' `ip berth`), that DNATs
 * traffic for a service's virtual IP and port, and for a workload's
 * published port on any of the node's addresses (the routing mesh), to one
 * of the service's ready endpoints on any node, picked at random per
 * connection (`numgen random`).
 *
 *   prerouting/output (nat)  `ip daddr VIP tcp|udp dport PORT dnat to
 *                            numgen random mod N map { i : ENDPOINT }`,
 *                            one rule per service port with ready
 *                            endpoints, in both chains (containers and the
 *                            node itself); and per published port
 *                            `fib daddr type local tcp|udp dport PUBLISHED
 *                            dnat to ...:TARGETPORT` (routing mesh: the port
 *                            answers on every node, whether or not a
 *                            replica runs there; the output chain leaves
 *                            127.0.0.0/8 alone). Mesh connections carry
 *                            packet mark MESH_MARK to postrouting.
 *   postrouting (nat)        masquerade of a container reaching a service
 *                            endpoint on its own bridge (hairpin: without it
 *                            the reply would go straight back over the
 *                            bridge with the endpoint's address); and of
 *                            mesh connections that leave for another node
 *                            (so the reply comes back through this node,
 *                            which undoes the DNAT) or hairpin on the
 *                            bridge. Other traffic between containers is
 *                            never NATed here.
 *   forward/output (filter)  anything still addressed to the service range
 *                            after DNAT (a service without ready endpoints,
 *                            an unknown VIP) is rejected: it never follows a
 *                            route off the node.
 *   input (filter)           a published port that was not DNATed (no ready
 *                            endpoint, no hold) is rejected on the node's
 *                            addresses (never reaches a process of the
 *                            node); hold listeners are accepted.
 *
 * Scale to zero: a `ServiceActivator` (optional) is asked before every
 * render for hold targets; a service without ready endpoints whose port has
 * one sends the VIP's and the published port's new connections to
 * `hold.address:hold.ports["PORT/PROTO"]` (an agent listener on the node's
 * bridge gateway that holds them until a replica is ready) instead of
 * rejecting them.
 *
 * `ServiceSync` polls the controller's ServiceService.List (every second),
 * renders the table, and when it changed replaces it with one `nft -f`
 * transaction and reads it back: if the DNAT (and mesh reject) rules it
 * expects are not all there it logs an error and tries again on the next
 * poll (the old table stays until a new one is complete).
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { AlreadyExistsError, InternalError, fromGrpcError, messageOf, parseCidr, parseIpv4, pause, type Logger } from '../../lib/index.js';
import { ServiceServiceClient, type ListServicesResponse } from '../../proto/gen/berth/v1/services.js';
import type { NetOps } from '../sys/index.js';

/** The service table could not be installed, or reads back without the expected rules. */
export class ServiceTableError extends InternalError {
  override name = 'ServiceTableError';
}

/** A host port a single container asks to publish is the routing mesh's: workload `workload` publishes it on every node. */
export class MeshPortInUseError extends AlreadyExistsError {
  override name = 'MeshPortInUseError';
  readonly port: number;
  readonly protocol: string;
  readonly workload: string;
  constructor(field: string, port: number, protocol: string, workload: string) {
    super('published port', `${port}/${protocol}`, {
      message: `${field}: host port ${port}/${protocol} is published on every node by workload "${workload}" (spec.ports[].publish, routing mesh); choose another host port`,
    });
    this.port = port;
    this.protocol = protocol;
    this.workload = workload;
  }
}

export const SERVICE_NFT_FAMILY = 'ip';
export const SERVICE_NFT_TABLE = 'berth_svc';
/** Packet mark bit that carries "this connection came through the routing mesh" from the DNAT to postrouting (masquerade). */
export const MESH_MARK = 0x00b40000;

/** Where a service's new connections go while it has no ready endpoint (scale to zero): an agent listener that holds them. Key of `ports`: "PORT/PROTO" of the service port (e.g. "80/tcp"); value: the listener's port on `address`. */
export interface HoldTarget { address: string; ports: Readonly<Record<string, number>> }
/** Opens/closes hold listeners for the services that may be at zero replicas; called by ServiceSync before every render with the newest List answer. */
export interface ServiceActivator { prepare(res: ListServicesResponse, opts: { signal?: AbortSignal }): Promise<ReadonlyMap<string, HoldTarget>> }

/** One port of a service as the table needs it. */
export interface ServiceTablePort {
  /** The port the virtual IP answers on. */
  port: number;
  protocol: string;
  /** The port on the endpoints; default `port`. */
  targetPort?: number;
  /** The host port published on every node (routing mesh); 0 or absent for none. */
  published?: number;
}

/** One service as the table needs it. */
export interface ServiceTableEntry {
  name: string;
  /** The virtual IP; "" for none (only the published ports get rules). */
  vip: string;
  ports: readonly ServiceTablePort[];
  /** Addresses of the ready endpoints. */
  endpoints: readonly string[];
  /** Where new connections go while there is no ready endpoint (scale to zero). */
  hold?: HoldTarget;
}

export interface ServiceTableInput {
  /** The node bridge (hairpin masquerade). */
  bridge: string;
  /** The service range (rejected when not DNATed). */
  serviceCidr: string;
  services: readonly ServiceTableEntry[];
}

function checkToken(s: string): string {
  if (!/^[A-Za-z0-9_.:/-]+$/.test(s)) throw new Error(`refusing to put ${JSON.stringify(s)} in an nft script`);
  return s;
}

/** The comment that names a service port's DNAT rule ("s:NAME:PORT/PROTO"). */
export function serviceRuleComment(name: string, port: number, protocol: string): string {
  return checkToken(`s:${name}:${port}/${protocol}`);
}

/** The comment that names a published port's (routing mesh) DNAT rule ("p:NAME:PUBLISHED/PROTO"). */
export function meshRuleComment(name: string, published: number, protocol: string): string {
  return checkToken(`p:${name}:${published}/${protocol}`);
}

/** The comment that names a published port's reject rule in the input chain ("r:NAME:PUBLISHED/PROTO"). */
export function meshRejectComment(name: string, published: number, protocol: string): string {
  return checkToken(`r:${name}:${published}/${protocol}`);
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** The rules of one table, checked, before they become text. */
interface RulePlan {
  /** DNAT rules of the prerouting chain; `out` is the output chain's form. */
  dnat: { comment: string; pre: string; out: string }[];
  /** Input chain: accepts of hold listeners, then rejects of published ports that were not DNATed. */
  input: string[];
  /** Comments of the reject rules in `input`. */
  rejects: string[];
}

function planRules(input: ServiceTableInput): RulePlan {
  checkToken(input.bridge);
  const range = parseCidr(input.serviceCidr, 'service-cidr', { strict: true });
  const cidr = `${input.serviceCidr}`;
  const plan: RulePlan = { dnat: [], input: [], rejects: [] };
  const accepts: string[] = [];
  const rejects: string[] = [];
  const seenVip = new Set<string>();
  const seenPub = new Set<string>();
  const mark = `meta mark set meta mark | 0x${MESH_MARK.toString(16).padStart(8, '0')}`;
  for (const s of [...input.services].sort((a, b) => a.name.localeCompare(b.name))) {
    checkToken(s.name);
    if (s.vip !== '') {
      const vip = parseIpv4(s.vip);
      if (vip === undefined || vip < range.base || vip >= range.base + 2 ** (32 - range.bits)) throw new Error(`refusing virtual IP ${JSON.stringify(s.vip)} of service ${JSON.stringify(s.name)}: expected an address in ${cidr}`);
    }
    const eps = [...new Set(s.endpoints)].sort();
    for (const e of eps) if (parseIpv4(e) === undefined) throw new Error(`refusing endpoint address ${JSON.stringify(e)} of service ${JSON.stringify(s.name)} in an nft script`);
    const hold = eps.length === 0 ? s.hold : undefined;
    if (hold !== undefined) {
      if (parseIpv4(hold.address) === undefined) throw new Error(`refusing hold address ${JSON.stringify(hold.address)} of service ${JSON.stringify(s.name)}: expected an IPv4 address`);
      for (const [k, v] of Object.entries(hold.ports)) {
        if (!/^\d{1,5}\/(tcp|udp)$/.test(k) || !isPort(v)) throw new Error(`refusing hold port ${JSON.stringify(k)} -> ${JSON.stringify(v)} of service ${JSON.stringify(s.name)}: expected "PORT/tcp|udp" -> a port from 1 to 65535`);
      }
    }
    const addrs = eps.length === 1 ? eps[0]! : `numgen random mod ${eps.length} map { ${eps.map((e, i) => `${i} : ${e}`).join(', ')} }`;
    for (const p of s.ports) {
      const target = p.targetPort ?? p.port;
      const published = p.published ?? 0;
      if (!isPort(p.port) || !isPort(target) || (p.protocol !== 'tcp' && p.protocol !== 'udp')) throw new Error(`refusing port ${p.port}/${p.protocol} of service ${JSON.stringify(s.name)} in an nft script`);
      if (published !== 0 && !isPort(published)) throw new Error(`refusing published port ${published}/${p.protocol} of service ${JSON.stringify(s.name)} in an nft script`);
      const holdPort = hold?.ports[`${p.port}/${p.protocol}`];
      // Where new connections go: the endpoints, the hold listener, or nowhere (rejected).
      const to = eps.length > 0 ? { dnat: `dnat to ${addrs}${target !== p.port ? `:${target}` : ''}`, mesh: `${mark} dnat to ${addrs}:${target}` }
        : holdPort !== undefined && hold ? { dnat: `dnat to ${hold.address}:${holdPort}`, mesh: `dnat to ${hold.address}:${holdPort}` }
          : undefined;
      if (holdPort !== undefined && hold && to) {
        const acc = `ip daddr ${hold.address} ${p.protocol} dport ${holdPort} accept comment "${checkToken(`h:${s.name}:${p.port}/${p.protocol}`)}"`;
        if (!accepts.includes(acc)) accepts.push(acc);
      }
      const vipKey = `${s.vip}:${p.port}/${p.protocol}`;
      if (s.vip !== '' && to && !seenVip.has(vipKey)) {
        seenVip.add(vipKey);
        const rule = `ip daddr ${s.vip} ${p.protocol} dport ${p.port} ${to.dnat} comment "${serviceRuleComment(s.name, p.port, p.protocol)}"`;
        plan.dnat.push({ comment: serviceRuleComment(s.name, p.port, p.protocol), pre: rule, out: rule });
      }
      const pubKey = `${published}/${p.protocol}`;
      if (published === 0 || seenPub.has(pubKey)) continue;
      seenPub.add(pubKey);
      const match = `${p.protocol} dport ${published}`;
      if (to) {
        const comment = meshRuleComment(s.name, published, p.protocol);
        plan.dnat.push({
          comment,
          pre: `fib daddr type local ${match} ${to.mesh} comment "${comment}"`,
          out: `fib daddr type local ip daddr != 127.0.0.0/8 ${match} ${to.mesh} comment "${comment}"`,
        });
      }
      const rc = meshRejectComment(s.name, published, p.protocol);
      rejects.push(`fib daddr type local ip daddr != 127.0.0.0/8 ${match} ct status ! dnat reject${p.protocol === 'tcp' ? ' with tcp reset' : ''} comment "${rc}"`);
      plan.rejects.push(rc);
    }
  }
  plan.input = [...accepts, ...rejects];
  plan.rejects.sort();
  return plan;
}

/** The DNAT rules the table holds in prerouting and in output (service ports with ready endpoints or a hold target, published ports likewise), as rule comments, sorted. */
export function expectedServiceRules(input: ServiceTableInput): string[] {
  return planRules(input).dnat.map((r) => r.comment).sort();
}

/** The reject rules of published ports the input chain holds, as rule comments, sorted. */
export function expectedMeshRejects(input: ServiceTableInput): string[] {
  return planRules(input).rejects;
}

/** The nft script that replaces `ip berth_svc` atomically with the table for `input`. Pure; throws on any value it will not write. */
export function renderServiceTable(input: ServiceTableInput): string {
  const t = `${SERVICE_NFT_FAMILY} ${SERVICE_NFT_TABLE}`;
  const plan = planRules(input);
  const cidr = `${input.serviceCidr}`;
  const b = `"${input.bridge}"`;
  const m = `meta mark & 0x${MESH_MARK.toString(16).padStart(8, '0')} == 0x${MESH_MARK.toString(16).padStart(8, '0')}`;
  const chain = (name: string, head: string, rules: string[]) => [`  chain ${name} {`, `    ${head}`, ...rules.map((r) => `    ${r}`), '  }'];
  return [
    `table ${t} {}`,
    `delete table ${t}`,
    `table ${t} {`,
    ...chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', plan.dnat.map((r) => r.pre)),
    ...chain('output', 'type nat hook output priority -100; policy accept;', plan.dnat.map((r) => r.out)),
    ...chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', [
      `iifname ${b} oifname ${b} ct status dnat ct original ip daddr ${cidr} masquerade comment "hairpin"`,
      `${m} oifname != ${b} masquerade comment "mesh to another node"`,
      `${m} iifname ${b} oifname ${b} masquerade comment "mesh hairpin"`,
    ]),
    ...chain('forward', 'type filter hook forward priority filter; policy accept;', [`ip daddr ${cidr} reject with icmp type host-unreachable comment "no endpoint"`]),
    ...chain('filter_output', 'type filter hook output priority filter; policy accept;', [`ip daddr ${cidr} reject with icmp type host-unreachable comment "no endpoint"`]),
    ...chain('input', 'type filter hook input priority filter; policy accept;', plan.input),
    '}',
    '',
  ].join('\n');
}

function installedRules(items: readonly unknown[], kind: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const i of items) {
    const rule = (i as { rule?: { chain?: string; comment?: string; expr?: unknown[] } }).rule;
    if (!rule || !(rule.expr ?? []).some((e) => typeof e === 'object' && e !== null && kind in e)) continue;
    const list = out.get(rule.chain ?? '') ?? [];
    list.push(rule.comment ?? '');
    out.set(rule.chain ?? '', list);
  }
  for (const l of out.values()) l.sort();
  return out;
}

/** The comments of the DNAT rules in `nft -j list table` output, per chain. */
export function installedServiceRules(items: readonly unknown[]): Map<string, string[]> {
  return installedRules(items, 'dnat');
}

/** The comments of the reject rules in `nft -j list table` output, per chain. */
export function installedRejectRules(items: readonly unknown[]): Map<string, string[]> {
  return installedRules(items, 'reject');
}

/**
 * The table's input from a ServiceService.List answer: only ready endpoints;
 * services with a virtual IP or a published port; `holds` (by service name,
 * from a ServiceActivator) attached to the services that have one.
 */
export function serviceTableInput(res: ListServicesResponse, bridge: string, holds: ReadonlyMap<string, HoldTarget> = new Map()): ServiceTableInput {
  return {
    bridge,
    serviceCidr: res.serviceCidr,
    services: res.services
      .filter((s) => s.virtualIp !== '' || s.ports.some((p) => p.published !== 0))
      .map((s) => {
        const hold = holds.get(s.name);
        return {
          name: s.name,
          vip: s.virtualIp,
          ports: s.ports.map((p) => ({ port: p.port, protocol: p.protocol, targetPort: p.targetPort !== 0 ? p.targetPort : p.port, published: p.published })),
          endpoints: s.endpoints.filter((e) => e.ready && e.address !== '').map((e) => e.address),
          ...(hold ? { hold } : {}),
        };
      }),
  };
}

/** The workload that publishes host port `port`/`protocol` in a List answer (routing mesh), if any. */
export function meshPortOwner(res: ListServicesResponse | undefined, port: number, protocol: string): string | undefined {
  return res?.services.find((s) => s.ports.some((p) => p.published === port && p.protocol === protocol))?.name;
}

/** Where the services come from (the controller's ServiceService.List). */
export interface ServiceSource {
  listServices(opts: { signal?: AbortSignal }): Promise<ListServicesResponse>;
}

export interface ServiceSyncOptions {
  ops: NetOps;
  logger: Logger;
  bridge: string;
  /** Hold targets for services at zero replicas (scale to zero); without it such services' connections are rejected. */
  activator?: ServiceActivator;
  /**
   * Host ports ("PORT/PROTO") the node itself serves (the agent's API, the
   * containers' DNS on the bridge gateway): a workload publishing one gets no
   * mesh rule for it (an error is logged), so no workload can take over the
   * node's own services.
   */
  reservedPorts?: readonly string[];
  /**
   * The host ports ("PORT/PROTO") single containers publish on this node
   * (NodeNetwork.hostPorts). A workload publishing one of them (the container
   * was there first) gets no mesh rule for it on this node, only on the
   * others; an error is logged. New single containers cannot take a mesh
   * port (NodeNetwork refuses it), so this only covers the ones made before
   * the workload published the port.
   */
  localPorts?: () => readonly string[];
}

/** `input` with the published ports in `reserved` ("PORT/PROTO") taken out (set to 0); returns what was taken out as "SERVICE:PORT/PROTO". */
export function withoutReservedPorts(input: ServiceTableInput, reserved: readonly string[]): { input: ServiceTableInput; skipped: string[] } {
  if (reserved.length === 0) return { input, skipped: [] };
  const set = new Set(reserved);
  const skipped: string[] = [];
  const services = input.services.map((s) => ({
    ...s,
    ports: s.ports.map((p) => {
      const key = `${p.published ?? 0}/${p.protocol}`;
      if ((p.published ?? 0) === 0 || !set.has(key)) return p;
      skipped.push(`${s.name}:${key}`);
      return { ...p, published: 0 };
    }),
  }));
  return { input: { ...input, services }, skipped };
}

/** Which workload publishes a host port on every node (routing mesh), as far as this node knows. */
export interface MeshPorts {
  publishedBy(port: number, protocol: string): string | undefined;
}

export class ServiceSync implements MeshPorts {
  private readonly log: Logger;
  private applied = '';
  private running: Promise<void> = Promise.resolve();
  private latest: ListServicesResponse | undefined;

  constructor(private readonly opts: ServiceSyncOptions) {
    this.log = opts.logger.child({ component: 'services' });
  }

  /** The workload whose published port `port`/`protocol` is, in the newest List answer given to apply(). */
  publishedBy(port: number, protocol: string): string | undefined {
    return meshPortOwner(this.latest, port, protocol);
  }

  /** Makes the table match `res`; rejects with ServiceTableError when nft fails or the read-back misses rules. */
  apply(res: ListServicesResponse, force = false, opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.latest = res;
    const run = () => this.applyNow(res, force, opts);
    const p = this.running.then(run, run);
    this.running = p.then(() => undefined, () => undefined);
    return p;
  }

  private async holds(res: ListServicesResponse, opts: { signal?: AbortSignal }): Promise<ReadonlyMap<string, HoldTarget>> {
    if (!this.opts.activator) return new Map();
    try {
      return await this.opts.activator.prepare(res, opts);
    } catch (err) {
      // Fresh endpoints matter more than holds: render without them (services at zero refuse) and ask again next time.
      this.log.error('failed to prepare hold listeners; services without endpoints refuse connections', { reason: messageOf(err) });
      return new Map();
    }
  }

  private async applyNow(res: ListServicesResponse, force: boolean, opts: { signal?: AbortSignal }): Promise<void> {
    const reserved = withoutReservedPorts(serviceTableInput(res, this.opts.bridge, await this.holds(res, opts)), this.opts.reservedPorts ?? []);
    const local = withoutReservedPorts(reserved.input, this.opts.localPorts?.() ?? []);
    const input = local.input;
    const script = renderServiceTable(input);
    if (script === this.applied && !force) return;
    this.applied = '';
    if (reserved.skipped.length > 0) this.log.error('refusing to publish ports the node itself serves', { ports: reserved.skipped, reserved: this.opts.reservedPorts });
    if (local.skipped.length > 0) this.log.error('not publishing ports a single container on this node already publishes', { ports: local.skipped });
    try {
      await this.opts.ops.nftApply(script);
    } catch (err) {
      throw new ServiceTableError(`failed to install the service table ${SERVICE_NFT_FAMILY} ${SERVICE_NFT_TABLE}: ${messageOf(err)}`, { cause: err });
    }
    const want = expectedServiceRules(input);
    const items = (await this.opts.ops.nftListTable(SERVICE_NFT_FAMILY, SERVICE_NFT_TABLE)) ?? [];
    const have = installedServiceRules(items);
    for (const chain of ['prerouting', 'output']) {
      const got = have.get(chain) ?? [];
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        throw new ServiceTableError(`failed to install the service table ${SERVICE_NFT_FAMILY} ${SERVICE_NFT_TABLE}: chain ${chain} holds DNAT rules ${JSON.stringify(got)} after nft -f, expected ${JSON.stringify(want)}`);
      }
    }
    const wantRejects = expectedMeshRejects(input);
    const gotRejects = installedRejectRules(items).get('input') ?? [];
    if (JSON.stringify(gotRejects) !== JSON.stringify(wantRejects)) {
      throw new ServiceTableError(`failed to install the service table ${SERVICE_NFT_FAMILY} ${SERVICE_NFT_TABLE}: chain input holds published-port rejects ${JSON.stringify(gotRejects)} after nft -f, expected ${JSON.stringify(wantRejects)}`);
    }
    this.applied = script;
    this.log.info('service table installed', {
      services: input.services.length, rules: want.length, published: wantRejects.length,
      held: input.services.filter((s) => s.hold && s.endpoints.length === 0).length, endpoints: input.services.reduce((n, s) => n + s.endpoints.length, 0),
    });
  }

  /** Deletes the table. */
  async clear(): Promise<void> {
    await this.opts.ops.nftDeleteTable(SERVICE_NFT_FAMILY, SERVICE_NFT_TABLE);
    this.applied = '';
  }

  /** Polls `source` every `intervalMs` until `signal` fires; failures are logged as errors and retried; every 10th poll re-checks the table even when nothing changed. */
  start(source: ServiceSource, intervalMs: number, signal: AbortSignal): Promise<void> {
    return (async () => {
      let n = 0;
      while (!signal.aborted) {
        try {
          await this.apply(await source.listServices({ signal }), n++ % 10 === 9, { signal });
        } catch (err) {
          if (!signal.aborted) this.log.error('failed to sync the service table', { reason: messageOf(err) });
        }
        await pause(intervalMs, signal);
      }
    })();
  }
}

/** A ServiceSource over ServiceService.List at `address`; close() releases the channel. */
export function grpcServiceSource(address: string, timeoutMs = 5000): ServiceSource & { close(): void } {
  const client = new ServiceServiceClient(address, credentials.createInsecure());
  return {
    listServices(opts: { signal?: AbortSignal }): Promise<ListServicesResponse> {
      return new Promise((resolve, reject) => {
        const call = client.list({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err: ServiceError | null, res: ListServicesResponse) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(fromGrpcError(err, `list services at ${address}`));
          else resolve(res);
        });
        const onAbort = (): void => call.cancel();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    close: () => client.close(),
  };
}
