/**
 * Service load balancing on the node: one nftables table of its own,
 * `ip berth_svc` (beside the published ports' `ip berth`), that DNATs
 * traffic for a service's virtual IP and port to one of the service's ready
 * endpoints on any node, picked at random per connection (`numgen random`).
 *
 *   prerouting/output (nat)  `ip daddr VIP tcp|udp dport PORT dnat to
 *                            numgen random mod N map { i : ENDPOINT }`,
 *                            one rule per service port with ready
 *                            endpoints, in both chains (containers and the
 *                            node itself).
 *   postrouting (nat)        masquerade of a container reaching a service
 *                            endpoint on its own bridge (hairpin: without it
 *                            the reply would go straight back over the
 *                            bridge with the endpoint's address).
 *   forward/output (filter)  anything still addressed to the service range
 *                            after DNAT (a service without ready endpoints,
 *                            an unknown VIP) is rejected: it never follows a
 *                            route off the node.
 *
 * `ServiceSync` polls the controller's ServiceService.List (every second),
 * renders the table, and when it changed replaces it with one `nft -f`
 * transaction and reads it back: if the DNAT rules it expects are not all
 * there it logs an error and tries again on the next poll (the old table
 * stays until a new one is complete).
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { InternalError, fromGrpcError, messageOf, parseCidr, parseIpv4, pause, type Logger } from '../../lib/index.js';
import { ServiceServiceClient, type ListServicesResponse } from '../../proto/gen/berth/v1/services.js';
import type { NetOps } from '../sys/index.js';

/** The service table could not be installed, or reads back without the expected rules. */
export class ServiceTableError extends InternalError {
  override name = 'ServiceTableError';
}

export const SERVICE_NFT_FAMILY = 'ip';
export const SERVICE_NFT_TABLE = 'berth_svc';

/** One service as the table needs it. */
export interface ServiceTableEntry {
  name: string;
  vip: string;
  ports: readonly { port: number; protocol: string }[];
  /** Addresses of the ready endpoints. */
  endpoints: readonly string[];
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

/** The service ports that get DNAT rules (those with ready endpoints), as rule comments, sorted. */
export function expectedServiceRules(input: ServiceTableInput): string[] {
  const out: string[] = [];
  for (const s of input.services) {
    if (s.endpoints.length === 0) continue;
    for (const p of s.ports) out.push(serviceRuleComment(s.name, p.port, p.protocol));
  }
  return out.sort();
}

/** The nft script that replaces `ip berth_svc` atomically with the table for `input`. Pure; throws on any value it will not write. */
export function renderServiceTable(input: ServiceTableInput): string {
  const t = `${SERVICE_NFT_FAMILY} ${SERVICE_NFT_TABLE}`;
  checkToken(input.bridge);
  const range = parseCidr(input.serviceCidr, 'service-cidr', { strict: true });
  const cidr = `${input.serviceCidr}`;
  const nat: string[] = [];
  const seen = new Set<string>();
  for (const s of [...input.services].sort((a, b) => a.name.localeCompare(b.name))) {
    const vip = parseIpv4(s.vip);
    if (vip === undefined || vip < range.base || vip >= range.base + 2 ** (32 - range.bits)) throw new Error(`refusing virtual IP ${JSON.stringify(s.vip)} of service ${JSON.stringify(s.name)}: expected an address in ${cidr}`);
    const eps = [...new Set(s.endpoints)].sort();
    for (const e of eps) if (parseIpv4(e) === undefined) throw new Error(`refusing endpoint address ${JSON.stringify(e)} of service ${JSON.stringify(s.name)} in an nft script`);
    if (eps.length === 0) continue;
    const target = eps.length === 1 ? eps[0]! : `numgen random mod ${eps.length} map { ${eps.map((e, i) => `${i} : ${e}`).join(', ')} }`;
    for (const p of s.ports) {
      if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535 || (p.protocol !== 'tcp' && p.protocol !== 'udp')) throw new Error(`refusing port ${p.port}/${p.protocol} of service ${JSON.stringify(s.name)} in an nft script`);
      const key = `${s.vip}:${p.port}/${p.protocol}`;
      if (seen.has(key)) continue;
      seen.add(key);
      nat.push(`ip daddr ${s.vip} ${p.protocol} dport ${p.port} dnat to ${target} comment "${serviceRuleComment(s.name, p.port, p.protocol)}"`);
    }
  }
  const b = `"${input.bridge}"`;
  const chain = (name: string, head: string, rules: string[]) => [`  chain ${name} {`, `    ${head}`, ...rules.map((r) => `    ${r}`), '  }'];
  return [
    `table ${t} {}`,
    `delete table ${t}`,
    `table ${t} {`,
    ...chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', nat),
    ...chain('output', 'type nat hook output priority -100; policy accept;', nat),
    ...chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', [
      `iifname ${b} oifname ${b} ct status dnat ct original ip daddr ${cidr} masquerade comment "hairpin"`,
    ]),
    ...chain('forward', 'type filter hook forward priority filter; policy accept;', [`ip daddr ${cidr} reject with icmp type host-unreachable comment "no endpoint"`]),
    ...chain('filter_output', 'type filter hook output priority filter; policy accept;', [`ip daddr ${cidr} reject with icmp type host-unreachable comment "no endpoint"`]),
    '}',
    '',
  ].join('\n');
}

/** The comments of the DNAT rules in `nft -j list table` output, per chain. */
export function installedServiceRules(items: readonly unknown[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const i of items) {
    const rule = (i as { rule?: { chain?: string; comment?: string; expr?: unknown[] } }).rule;
    if (!rule || !(rule.expr ?? []).some((e) => typeof e === 'object' && e !== null && 'dnat' in e)) continue;
    const list = out.get(rule.chain ?? '') ?? [];
    list.push(rule.comment ?? '');
    out.set(rule.chain ?? '', list);
  }
  for (const l of out.values()) l.sort();
  return out;
}

/** The table's input from a ServiceService.List answer: only ready endpoints, only services with a virtual IP. */
export function serviceTableInput(res: ListServicesResponse, bridge: string): ServiceTableInput {
  return {
    bridge,
    serviceCidr: res.serviceCidr,
    services: res.services
      .filter((s) => s.virtualIp !== '')
      .map((s) => ({
        name: s.name,
        vip: s.virtualIp,
        ports: s.ports.map((p) => ({ port: p.port, protocol: p.protocol })),
        endpoints: s.endpoints.filter((e) => e.ready && e.address !== '').map((e) => e.address),
      })),
  };
}

/** Where the services come from (the controller's ServiceService.List). */
export interface ServiceSource {
  listServices(opts: { signal?: AbortSignal }): Promise<ListServicesResponse>;
}

export interface ServiceSyncOptions {
  ops: NetOps;
  logger: Logger;
  bridge: string;
}

export class ServiceSync {
  private readonly log: Logger;
  private applied = '';
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ServiceSyncOptions) {
    this.log = opts.logger.child({ component: 'services' });
  }

  /** Makes the table match `res`; rejects with ServiceTableError when nft fails or the read-back misses rules. */
  apply(res: ListServicesResponse, force = false): Promise<void> {
    const run = () => this.applyNow(res, force);
    const p = this.running.then(run, run);
    this.running = p.then(() => undefined, () => undefined);
    return p;
  }

  private async applyNow(res: ListServicesResponse, force: boolean): Promise<void> {
    const input = serviceTableInput(res, this.opts.bridge);
    const script = renderServiceTable(input);
    if (script === this.applied && !force) return;
    this.applied = '';
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
    this.applied = script;
    this.log.info('service table installed', { services: input.services.length, rules: want.length, endpoints: input.services.reduce((n, s) => n + s.endpoints.length, 0) });
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
          await this.apply(await source.listServices({ signal }), n++ % 10 === 9);
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
