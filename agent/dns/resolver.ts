/**
 * The node's DNS resolver: containers on the node bridge ask it (on the
 * bridge's gateway address, UDP and TCP port 53) and it answers the cluster's
 * service names itself and forwards everything else to the node's own
 * resolvers.
 *
 * Vocabulary
 *   service name  `NAME` or `NAME.berth` (ZONE), NAME a workload: answered
 *                 from the ServiceDirectory with the workload's service
 *                 address (A, TTL 5 s; AAAA and other types get an empty
 *                 NOERROR). An unknown `*.berth` name gets NXDOMAIN.
 *   upstream      one of the node's resolvers (the agent's /etc/resolv.conf);
 *                 queries for other names go there unchanged (UDP, and TCP
 *                 when the answer was truncated and the client came by TCP).
 *                 Without upstreams such queries are REFUSED: the resolver
 *                 never makes up answers for names it does not know.
 *
 * Lifecycle: new DnsResolver(opts) -> serve(udp, tcp) (sockets already bound,
 * any number of pairs) -> close(). `answer(packet, transport)` is the
 * transport-free core, and never throws.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { cidrContains, InvalidArgumentError, messageOf, parseCidr, parseIpv4, type Logger } from '../../lib/index.js';
import {
  buildResponse,
  CLASS_ANY,
  CLASS_IN,
  EDNS_UDP_SIZE,
  parseQuery,
  RCODE_BADVERS,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  TYPE_A,
  TYPE_ANY,
  messageId,
  type Query,
} from './codec.js';

/** The cluster's DNS zone. */
export const ZONE = 'berth';
/** TTL of service answers, seconds. */
export const SERVICE_TTL = 5;
const FORWARD_TIMEOUT_MS = 2000;
const MAX_IN_FLIGHT = 256;
const MAX_TCP_CONNECTIONS = 64;
/** Queries a TCP client may have unanswered before it is disconnected. */
const MAX_TCP_PENDING = 32;
const TCP_IDLE_MS = 10_000;

/** Where service names come from (the role the resolver needs of cluster state). */
export interface ServiceDirectory {
  /** The service address (IPv4) of workload `name` (a lowercased DNS label), or undefined. */
  lookup(name: string): string | undefined;
}

export interface Upstream {
  host: string;
  port: number;
}

export interface DnsResolverOptions {
  directory: ServiceDirectory;
  /** The node's resolvers; [] refuses every name that is not the cluster's. */
  upstreams: Upstream[];
  logger: Logger;
  forwardTimeoutMs?: number;
  /**
   * Only clients with an IPv4 address in this range are answered (the
   * cluster range: containers and nodes); others are ignored, so the node
   * is no open resolver. Default: everyone.
   */
  clients?: string;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The nameservers of a resolv.conf text (IPv4 and IPv6), port 53. */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && net.isIP(m[1]!) !== 0) out.push({ host: m[1]!, port: 53 });
  }
  return out;
}

/**
 * An upstream setting: "none" (never forward) or IP addresses separated by
 * commas (port 53). Throws InvalidArgumentError naming `field`.
 */
export function parseUpstreamList(raw: string, field: string): Upstream[] {
  if (raw.trim() === 'none') return [];
  const parts = raw.split(',').map((p) => p.trim()).filter(Boolean);
  if (parts.length === 0) throw new InvalidArgumentError(`${field}: expected "none" or IP addresses separated by commas, got "${raw}"`, { field });
  return parts.map((p) => {
    if (net.isIP(p) === 0) throw new InvalidArgumentError(`${field}: expected "none" or IP addresses separated by commas; "${p}" is not an IP address`, { field });
    return { host: p, port: 53 };
  });
}

/** The agent's own resolvers, from /etc/resolv.conf ([] when there is none). */
export function systemUpstreams(path = '/etc/resolv.conf'): Upstream[] {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
}

export class DnsResolver {
  private readonly directory: ServiceDirectory;
  private readonly upstreams: Upstream[];
  private readonly log: Logger;
  private readonly forwardTimeoutMs: number;
  private inFlight = 0;
  private closed = false;
  private readonly udps = new Set<dgram.Socket>();
  private readonly servers = new Set<net.Server>();
  private readonly conns = new Set<net.Socket>();
  private readonly allowed: (address: string) => boolean;

  constructor(opts: DnsResolverOptions) {
    if (opts.clients !== undefined) {
      const range = parseCidr(opts.clients, 'clients');
      this.allowed = (address) => {
        const ip = parseIpv4(address.startsWith('::ffff:') ? address.slice(7) : address);
        return ip !== undefined && cidrContains(range, ip);
      };
    } else {
      this.allowed = () => true;
    }
    this.directory = opts.directory;
    this.upstreams = opts.upstreams;
    this.log = opts.logger.child({ component: 'dns' });
    this.forwardTimeoutMs = opts.forwardTimeoutMs ?? FORWARD_TIMEOUT_MS;
  }

  /** Answers a query packet; undefined = send nothing. Never throws. */
  async answer(packet: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    try {
      const p = parseQuery(packet);
      if (p.kind === 'drop') return undefined;
      const ra = this.upstreams.length > 0;
      if (p.kind === 'error') return buildResponse({ id: p.id, rcode: p.rcode, rd: p.rd, opcode: p.opcode, aa: false, ra });
      const q = p.query;
      const base = { id: q.id, rd: q.rd, cd: q.cd, question: q.question, ra, edns: q.edns !== undefined };
      if (q.edns && q.edns.version !== 0) return buildResponse({ ...base, rcode: RCODE_BADVERS, aa: false });
      const local = this.local(q);
      if (local) return buildResponse({ ...base, ...local });
      if (!ra) return buildResponse({ ...base, rcode: RCODE_REFUSED, aa: false });
      if (this.inFlight >= MAX_IN_FLIGHT) return undefined;
      this.inFlight++;
      try {
        const reply = await this.forward(packet, q, transport);
        if (reply) return reply;
        return buildResponse({ ...base, rcode: RCODE_SERVFAIL, aa: false });
      } finally {
        this.inFlight--;
      }
    } catch (err) {
      this.log.warn('dns query failed', { reason: messageOf(err) });
      return undefined;
    }
  }

  /** The answer for a cluster name, or undefined when the name is not the cluster's. */
  private local(q: Query): { rcode: number; aa: boolean; answers?: { address: string; ttl: number }[] } | undefined {
    const labels = q.question.labels.map((l) => l.toLowerCase());
    const inZone = labels.length >= 1 && labels[labels.length - 1] === ZONE;
    let name: string | undefined;
    if (inZone) {
      if (labels.length === 1) return { rcode: RCODE_NOERROR, aa: true };
      if (labels.length !== 2) return { rcode: RCODE_NXDOMAIN, aa: true };
      name = labels[0]!;
    } else if (labels.length === 1) {
      name = labels[0]!;
    } else {
      return undefined;
    }
    const address = LABEL.test(name) ? this.directory.lookup(name) : undefined;
    if (address === undefined) return inZone ? { rcode: RCODE_NXDOMAIN, aa: true } : undefined;
    if (q.question.class !== CLASS_IN && q.question.class !== CLASS_ANY) return { rcode: RCODE_REFUSED, aa: false };
    const wantsA = q.question.type === TYPE_A || q.question.type === TYPE_ANY;
    return { rcode: RCODE_NOERROR, aa: true, ...(wantsA ? { answers: [{ address, ttl: SERVICE_TTL }] } : {}) };
  }

  private async forward(packet: Buffer, q: Query, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    for (const up of this.upstreams) {
      try {
        let reply = await this.forwardUdp(packet, q.id, up);
        // Truncated: a TCP client can take the whole answer.
        if (reply && transport === 'tcp' && reply.length >= 3 && (reply[2]! & 0x02) !== 0) reply = await this.forwardTcp(packet, q.id, up);
        if (reply) return reply;
      } catch (err) {
        this.log.debug('dns upstream failed', { upstream: up.host, reason: messageOf(err) });
      }
    }
    return undefined;
  }

  /** One query to an upstream over UDP from a fresh socket (random port); resolves undefined on timeout. */
  private forwardUdp(packet: Buffer, id: number, up: Upstream): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const s = dgram.createSocket(net.isIPv6(up.host) ? 'udp6' : 'udp4');
      let done = false;
      const finish = (b: Buffer | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.close();
        resolve(b);
      };
      const timer = setTimeout(() => finish(undefined), this.forwardTimeoutMs);
      s.on('error', () => finish(undefined));
      s.on('message', (msg, rinfo) => {
        // Only the upstream's answer to this query.
        if (rinfo.port !== up.port || messageId(msg) !== id || msg.length < 12 || (msg[2]! & 0x80) === 0) return;
        if (!(rinfo.address === up.host || rinfo.address === `::ffff:${up.host}`)) return;
        finish(msg);
      });
      s.send(packet, up.port, up.host, (err) => {
        if (err) finish(undefined);
      });
    });
  }

  private forwardTcp(packet: Buffer, id: number, up: Upstream): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const s = net.connect({ host: up.host, port: up.port });
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (b: Buffer | undefined): void => {
        if (done) return;
        done = true;
        s.destroy();
        resolve(b);
      };
      s.setTimeout(this.forwardTimeoutMs, () => finish(undefined));
      s.on('error', () => finish(undefined));
      s.on('close', () => finish(undefined));
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(packet.length);
        s.write(Buffer.concat([len, packet]));
      });
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          finish(messageId(msg) === id ? Buffer.from(msg) : undefined);
        }
      });
    });
  }

  /** Serves on bound sockets: a UDP socket and/or a listening TCP server. */
  serve(udp: dgram.Socket | undefined, tcp: net.Server | undefined): void {
    if (this.closed) throw new Error('the dns resolver is closed');
    if (udp) {
      this.udps.add(udp);
      udp.on('error', (err) => this.log.warn('dns udp socket error', { reason: messageOf(err) }));
      udp.on('message', (msg, rinfo) => {
        if (!this.allowed(rinfo.address)) return;
        void this.answer(msg, 'udp').then((reply) => {
          if (!reply || this.closed) return;
          const limit = Math.min(EDNS_UDP_SIZE, Math.max(512, ednsSize(msg)));
          udp.send(reply.length > limit ? truncate(reply) : reply, rinfo.port, rinfo.address, () => undefined);
        });
      });
    }
    if (tcp) {
      this.servers.add(tcp);
      tcp.on('error', (err) => this.log.warn('dns tcp server error', { reason: messageOf(err) }));
      tcp.on('connection', (c) => this.connection(c));
    }
  }

  private connection(c: net.Socket): void {
    if (this.conns.size >= MAX_TCP_CONNECTIONS || this.closed || !this.allowed(c.remoteAddress ?? '')) {
      c.destroy();
      return;
    }
    this.conns.add(c);
    c.on('close', () => this.conns.delete(c));
    c.on('error', () => undefined);
    c.setTimeout(TCP_IDLE_MS, () => c.destroy());
    let buf = Buffer.alloc(0);
    let chain = Promise.resolve();
    let pending = 0;
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (++pending > MAX_TCP_PENDING) {
          c.destroy();
          return;
        }
        // Answers go out in query order.
        chain = chain.then(async () => {
          const reply = await this.answer(msg, 'tcp');
          pending--;
          if (!reply || c.destroyed) return;
          const head = Buffer.alloc(2);
          head.writeUInt16BE(reply.length);
          c.write(Buffer.concat([head, reply]));
        });
      }
    });
  }

  /** Stops serving and closes every socket it was given. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.conns) c.destroy();
    for (const u of this.udps) {
      try {
        u.close();
      } catch {
        // already closed
      }
    }
    await Promise.all([...this.servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.udps.clear();
    this.servers.clear();
  }
}

/** The UDP size the client announced (512 without EDNS). */
function ednsSize(query: Buffer): number {
  const p = parseQuery(query);
  return p.kind === 'query' && p.query.edns ? p.query.edns.udpSize : 512;
}

/** A too-large UDP answer: header and question only, TC set. */
function truncate(reply: Buffer): Buffer {
  const head = Buffer.from(reply.subarray(0, 12));
  head[2] = head[2]! | 0x02;
  head.writeUInt16BE(0, 4);
  head.writeUInt16BE(0, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  return head;
}
