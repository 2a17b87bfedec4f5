/**
 * Network values both programs and the CLI share: IPv4 addresses and CIDR
 * ranges, the cluster range's per-node subnets, container network modes and
 * published ports (`-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`).
 */
import { InvalidArgumentError } from './errors.js';

/** Default range container subnets are taken from (controller --cluster-cidr). */
export const DEFAULT_CLUSTER_CIDR = '10.244.0.0/16';
/** Prefix length of each node's container subnet. */
export const NODE_SUBNET_BITS = 24;
export const NETWORK_MODES = ['cluster', 'host', 'none'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

export interface Ipv4Cidr {
  /** Network address as an unsigned 32-bit number (host bits cleared). */
  base: number;
  bits: number;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The address as a number, or undefined when `s` is not a dotted-quad IPv4 address. */
export function parseIpv4(s: string): number | undefined {
  const m = IPV4.exec(s);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  if (o.some((x, i) => x > 255 || (m[i + 1]!.length > 1 && m[i + 1]!.startsWith('0')))) return undefined;
  return o.reduce((a, x) => a * 256 + x, 0);
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Parses "a.b.c.d/n"; throws InvalidArgumentError naming `field`. With `strict`, host bits must be zero. */
export function parseCidr(s: string, field: string, opts: { strict?: boolean } = {}): Ipv4Cidr {
  const [addr = '', bitsText = '', ...rest] = s.split('/');
  const ip = parseIpv4(addr);
  const bits = /^\d{1,2}$/.test(bitsText) ? Number(bitsText) : -1;
  if (ip === undefined || bits < 0 || bits > 32 || rest.length > 0) {
    throw new InvalidArgumentError(`${field}: expected an IPv4 CIDR range such as 10.244.0.0/16, got ${JSON.stringify(s)}`, { field });
  }
  const size = 2 ** (32 - bits);
  const base = ip - (ip % size);
  if (opts.strict && base !== ip) {
    throw new InvalidArgumentError(`${field}: ${JSON.stringify(s)} has host bits set; expected ${formatIpv4(base)}/${bits}`, { field });
  }
  return { base, bits };
}

export function formatCidr(c: Ipv4Cidr): string {
  return `${formatIpv4(c.base)}/${c.bits}`;
}

export function cidrContains(c: Ipv4Cidr, ip: number): boolean {
  const size = 2 ** (32 - c.bits);
  return ip >= c.base && ip < c.base + size;
}

/** The cluster range as a range to carve node subnets from; throws when it cannot hold one /24. */
export function parseClusterCidr(s: string, field = 'cluster-cidr'): Ipv4Cidr {
  const c = parseCidr(s, field, { strict: true });
  if (c.bits > NODE_SUBNET_BITS || c.bits < 8) {
    throw new InvalidArgumentError(`${field}: expected a prefix length from 8 to ${NODE_SUBNET_BITS} (the range is split into /${NODE_SUBNET_BITS} node subnets), got ${JSON.stringify(s)}`, { field });
  }
  return c;
}

/** How many node subnets the cluster range holds. */
export function nodeSubnetCount(cluster: Ipv4Cidr): number {
  return 2 ** (NODE_SUBNET_BITS - cluster.bits);
}

/** The `index`-th /24 of the cluster range. */
export function nodeSubnet(cluster: Ipv4Cidr, index: number): Ipv4Cidr {
  return { base: cluster.base + index * 2 ** (32 - NODE_SUBNET_BITS), bits: NODE_SUBNET_BITS };
}

/** The index of a /24 inside the cluster range, or undefined when it is not one of its node subnets. */
export function nodeSubnetIndex(cluster: Ipv4Cidr, subnet: string): number | undefined {
  let c: Ipv4Cidr;
  try {
    c = parseCidr(subnet, 'subnet', { strict: true });
  } catch {
    return undefined;
  }
  if (c.bits !== NODE_SUBNET_BITS || !cidrContains(cluster, c.base)) return undefined;
  return (c.base - cluster.base) / 2 ** (32 - NODE_SUBNET_BITS);
}

/** Checks a container network mode ("" means cluster); returns the mode. */
export function parseNetworkMode(s: string | undefined, field = 'network'): NetworkMode {
  const v = s === undefined || s === '' ? 'cluster' : s;
  if (!(NETWORK_MODES as readonly string[]).includes(v)) {
    throw new InvalidArgumentError(`${field}: expected one of ${NETWORK_MODES.map((m) => `"${m}"`).join(', ')}, got ${JSON.stringify(s)}`, { field });
  }
  return v as NetworkMode;
}

export interface PublishedPort {
  /** Host address to listen on; "" for every address of the node. */
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

function port(text: string, what: string, field: string, raw: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    throw new InvalidArgumentError(`${field}: ${what} must be a whole number from 1 to 65535, got ${JSON.stringify(text)} in ${JSON.stringify(raw)} (expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp])`, { field });
  }
  return n;
}

/** Checks a host address for a published port: an IPv4 address that is not loopback, or "". */
export function checkPublishHostIp(hostIp: string, field: string): void {
  if (hostIp === '') return;
  const ip = parseIpv4(hostIp);
  if (ip === undefined) throw new InvalidArgumentError(`${field}: expected an IPv4 address of the node, got ${JSON.stringify(hostIp)}`, { field });
  if (Math.floor(ip / 2 ** 24) === 127) {
    throw new InvalidArgumentError(`${field}: loopback addresses cannot be published to (use the node's address or leave it out for all), got ${JSON.stringify(hostIp)}`, { field });
  }
}

/** Parses `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]` (berth run -p). */
export function parsePublish(raw: string, field = 'publish'): PublishedPort {
  let rest = raw;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== 'tcp' && p !== 'udp') throw new InvalidArgumentError(`${field}: protocol must be "tcp" or "udp", got ${JSON.stringify(p)} in ${JSON.stringify(raw)}`, { field });
    protocol = p;
    rest = rest.slice(0, slash);
  }
  const parts = rest.split(':');
  if (parts.length < 2 || parts.length > 3) {
    throw new InvalidArgumentError(`${field}: expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp], got ${JSON.stringify(raw)}`, { field });
  }
  const hostIp = parts.length === 3 ? parts[0]! : '';
  checkPublishHostIp(hostIp, field);
  const hostPort = port(parts[parts.length - 2]!, 'the host port', field, raw);
  const containerPort = port(parts[parts.length - 1]!, 'the container port', field, raw);
  return { hostIp, hostPort, containerPort, protocol };
}
