/**
 * Service virtual IPs: every workload with ports holds one address of the
 * service range (controller --service-cidr, default 10.96.0.0/16).
 *
 * Keys (beside the layout in keys.ts):
 *   <prefix>vips/<a.b.c.d>      workload name holding the address
 *   <prefix>vipof/<workload>    the workload's address
 *
 * Both keys are written in one transaction that checks both are still free,
 * so no two workloads share an address and a workload never holds two; both
 * are deleted in one transaction that checks the owner. The assignment
 * lives in etcd, so it survives controller restarts.
 */
import type { IKeyValue } from 'etcd3';
import { FailedPreconditionError, InvalidArgumentError, formatCidr, formatIpv4, parseCidr, parseIpv4, type Ipv4Cidr } from '../../lib/index.js';
import type { CallOptions } from './types.js';
import { CONFLICT_ATTEMPTS, type EtcdStore } from './etcd.js';
import { ConflictError } from './errors.js';
import { prefixEnd } from './keys.js';

/** Default range service virtual IPs come from. */
export const DEFAULT_SERVICE_CIDR = '10.96.0.0/16';

/** Parses a service range: an IPv4 CIDR from /8 to /28 without host bits. */
export function parseServiceCidr(s: string, field = 'service-cidr'): Ipv4Cidr {
  const c = parseCidr(s, field, { strict: true });
  if (c.bits < 8 || c.bits > 28) throw new InvalidArgumentError(`${field}: expected a prefix length from /8 to /28, got ${JSON.stringify(s)}`, { field });
  return c;
}

/** Refuses a service range that overlaps the cluster (container) range. */
export function checkRangesApart(serviceCidr: string, clusterCidr: string): void {
  const a = parseServiceCidr(serviceCidr);
  const b = parseCidr(clusterCidr, 'cluster-cidr');
  const end = (c: Ipv4Cidr) => c.base + 2 ** (32 - c.bits);
  if (a.base < end(b) && b.base < end(a)) {
    throw new InvalidArgumentError(`service-cidr: ${formatCidr(a)} overlaps the cluster range ${formatCidr(b)}; expected a range apart from it (default 10.96.0.0/16)`, { field: 'service-cidr' });
  }
}

/**
 * The address a workload gets: the first free one at or after a start point
 * hashed from the name (wrapping), never the range's first or last address.
 * `taken` holds the addresses in use.
 */
export function chooseVip(range: Ipv4Cidr, workload: string, taken: ReadonlySet<string>): string {
  const size = 2 ** (32 - range.bits);
  const usable = size - 2;
  const start = nameHash(workload) % usable;
  for (let k = 0; k < usable; k++) {
    const ip = formatIpv4(range.base + 1 + ((start + k) % usable));
    if (!taken.has(ip)) return ip;
  }
  throw new FailedPreconditionError(`failed to allocate a virtual IP for workload "${workload}": all ${usable} addresses of the service range ${formatCidr(range)} are taken; delete workloads or use a larger --service-cidr`);
}

/** FNV-1a of the name (32 bits). */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** Virtual IP assignments in etcd (see the key layout above). */
export class EtcdVipStore {
  readonly range: Ipv4Cidr;

  constructor(private readonly store: EtcdStore, serviceCidr: string = DEFAULT_SERVICE_CIDR) {
    this.range = parseServiceCidr(serviceCidr);
  }

  private get vipsPrefix(): string {
    return `${this.store.keys.prefix}vips/`;
  }

  private get ofPrefix(): string {
    return `${this.store.keys.prefix}vipof/`;
  }

  private async range2(what: string, opts: CallOptions | undefined): Promise<{ vips: IKeyValue[]; of: IKeyValue[] }> {
    const res = await this.store.call(what, opts, () => this.store.client.kv.txn({
      compare: [],
      success: [
        { request_range: { key: Buffer.from(this.vipsPrefix), range_end: prefixEnd(this.vipsPrefix) } },
        { request_range: { key: Buffer.from(this.ofPrefix), range_end: prefixEnd(this.ofPrefix) } },
      ],
      failure: [],
    }));
    return { vips: res.responses[0]?.response_range.kvs ?? [], of: res.responses[1]?.response_range.kvs ?? [] };
  }

  /** Current assignments, workload name -> address (only pairs whose two keys agree). */
  async list(opts?: CallOptions): Promise<Map<string, string>> {
    const { vips, of } = await this.range2('list service virtual IPs', opts);
    const owner = new Map(vips.map((kv) => [kv.key.toString().slice(this.vipsPrefix.length), kv.value.toString()]));
    const out = new Map<string, string>();
    for (const kv of of) {
      const name = kv.key.toString().slice(this.ofPrefix.length);
      const ip = kv.value.toString();
      if (owner.get(ip) === name) out.set(name, ip);
    }
    return out;
  }

  /** The workload's address, allocating one atomically when it has none. */
  async allocate(workload: string, opts?: CallOptions): Promise<string> {
    const what = `allocate a virtual IP for workload "${workload}"`;
    for (let i = 0; i < CONFLICT_ATTEMPTS; i++) {
      const { vips, of } = await this.range2(what, opts);
      const mine = of.find((kv) => kv.key.toString() === `${this.ofPrefix}${workload}`);
      if (mine) return mine.value.toString();
      const taken = new Set(vips.map((kv) => kv.key.toString().slice(this.vipsPrefix.length)));
      const ip = chooseVip(this.range, workload, taken);
      const vk = Buffer.from(`${this.vipsPrefix}${ip}`);
      const ok = Buffer.from(`${this.ofPrefix}${workload}`);
      const res = await this.store.call(what, opts, () => this.store.client.kv.txn({
        compare: [
          { key: vk, target: 'Create', result: 'Equal', create_revision: 0 },
          { key: ok, target: 'Create', result: 'Equal', create_revision: 0 },
        ],
        success: [{ request_put: { key: vk, value: Buffer.from(workload) } }, { request_put: { key: ok, value: Buffer.from(ip) } }],
        failure: [],
      }));
      if (res.succeeded) return ip;
    }
    throw new ConflictError(`failed to ${what}: other writers kept taking addresses; tried ${CONFLICT_ATTEMPTS} times, try again`, { keys: [this.vipsPrefix] });
  }

  /** Releases the workload's address when it still holds `ip`; true when something was deleted. */
  async release(workload: string, ip: string, opts?: CallOptions): Promise<boolean> {
    if (parseIpv4(ip) === undefined) return false;
    const vk = Buffer.from(`${this.vipsPrefix}${ip}`);
    const ok = Buffer.from(`${this.ofPrefix}${workload}`);
    const res = await this.store.call(`release virtual IP "${ip}" of workload "${workload}"`, opts, () => this.store.client.kv.txn({
      compare: [
        { key: vk, target: 'Value', result: 'Equal', value: Buffer.from(workload) },
        { key: ok, target: 'Value', result: 'Equal', value: Buffer.from(ip) },
      ],
      success: [{ request_delete_range: { key: vk } }, { request_delete_range: { key: ok } }],
      failure: [],
    }));
    return res.succeeded;
  }

  /**
   * Makes the assignments match `workloads` (the names of the workloads with
   * ports): releases addresses of workloads not in it, allocates for those
   * without one. `assigned` must have been read BEFORE `workloads` (then a
   * workload created in between is never released). Returns the assignments.
   */
  async sync(assigned: ReadonlyMap<string, string>, workloads: ReadonlySet<string>, opts?: CallOptions): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const [name, ip] of assigned) {
      if (!workloads.has(name)) await this.release(name, ip, opts);
    }
    for (const name of [...workloads].sort()) out.set(name, assigned.get(name) ?? (await this.allocate(name, opts)));
    return out;
  }
}
