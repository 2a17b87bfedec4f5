/**
 * The node's connection tracking table, as the kernel lists it in
 * /proc/net/nf_conntrack of the node netns (agent/network's traffic meter
 * counts open connections per endpoint from it).
 *
 * Vocabulary
 *   original  the tuple of the first packet (client -> the address it dialed,
 *             e.g. a service virtual IP).
 *   reply     the tuple replies carry (after DNAT the reply source is the
 *             endpoint that really answers).
 *   state     the TCP state ("ESTABLISHED", "TIME_WAIT", ...); "" for
 *             protocols without one (udp, icmp).
 *
 * Like agent/sys/net.ts, the node netns is this process's own or a named one
 * (`nodeNetns`); for a named one the file is read by `cat` run through
 * `nsenter --net=` (/proc/net shows the reading task's namespace).
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { CancelledError } from '../../lib/errors.js';
import { NetToolError } from './net.js';

/** One direction of a tracked connection. */
export interface ConntrackTuple {
  src: string;
  dst: string;
  /** 0 for protocols without ports. */
  sport: number;
  dport: number;
}

export interface ConntrackEntry {
  /** "tcp", "udp", "icmp", ... */
  protocol: string;
  /** TCP state ("ESTABLISHED", ...), "" for protocols without one. */
  state: string;
  original: ConntrackTuple;
  reply: ConntrackTuple;
}

/** The file is read whole; beyond this size reading fails rather than filling memory. */
export const MAX_CONNTRACK_BYTES = 256 * 1024 * 1024;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const STATE = /^[A-Z_]+$/;

function port(v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : -1;
}

/**
 * Parses /proc/net/nf_conntrack text. Lines that are not IPv4 entries with
 * two complete tuples (IPv6, or anything malformed) are skipped: the reader
 * only needs to count IPv4 connections.
 *
 * Line shape: `ipv4 2 tcp 6 431999 ESTABLISHED src=A dst=B sport=1 dport=80
 * src=B dst=A sport=80 dport=1 [ASSURED] mark=0 zone=0 use=2`.
 */
export function parseConntrack(text: string): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'ipv4' || f.length < 6) continue;
    const protocol = f[2] ?? '';
    if (!/^[a-z0-9]+$/.test(protocol)) continue;
    const tuples: Partial<Record<'src' | 'dst' | 'sport' | 'dport', string>>[] = [];
    let state = '';
    for (let i = 5; i < f.length; i++) {
      const w = f[i]!;
      const eq = w.indexOf('=');
      if (eq < 0) {
        if (i === 5 && STATE.test(w)) state = w;
        continue;
      }
      const key = w.slice(0, eq);
      const value = w.slice(eq + 1);
      if (key === 'src') tuples.push({});
      if (key !== 'src' && key !== 'dst' && key !== 'sport' && key !== 'dport') continue;
      const t = tuples[tuples.length - 1];
      if (t === undefined || t[key] !== undefined || tuples.length > 2) continue;
      t[key] = value;
    }
    const [o, r] = tuples;
    if (o === undefined || r === undefined || tuples.length !== 2) continue;
    if (![o.src, o.dst, r.src, r.dst].every((a) => a !== undefined && IPV4.test(a))) continue;
    const ports = [port(o.sport), port(o.dport), port(r.sport), port(r.dport)];
    if (ports.some((p) => p < 0)) continue;
    out.push({
      protocol,
      state,
      original: { src: o.src!, dst: o.dst!, sport: ports[0]!, dport: ports[1]! },
      reply: { src: r.src!, dst: r.dst!, sport: ports[2]!, dport: ports[3]! },
    });
  }
  return out;
}

/** Reads the node's connection tracking table. */
export interface ConntrackReader {
  /** The IPv4 entries; an empty list when connection tracking is not loaded in the node netns. */
  entries(opts?: { signal?: AbortSignal }): Promise<ConntrackEntry[]>;
}

export interface ProcConntrackReaderOptions {
  /** Path of the node netns when it is not this process's own (tests: /run/netns/<host>). */
  nodeNetns?: string;
}

/** Reads /proc/net/nf_conntrack of the node netns. */
export class ProcConntrackReader implements ConntrackReader {
  constructor(private readonly opts: ProcConntrackReaderOptions = {}) {}

  async entries(opts: { signal?: AbortSignal } = {}): Promise<ConntrackEntry[]> {
    return parseConntrack(await this.read(opts.signal));
  }

  private async read(signal: AbortSignal | undefined): Promise<string> {
    if (this.opts.nodeNetns === undefined) {
      try {
        return await readFile('/proc/self/net/nf_conntrack', { encoding: 'utf8', signal });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
        if ((err as Error).name === 'AbortError') throw new CancelledError('reading the conntrack table cancelled', { cause: err });
        throw new NetToolError('read /proc/net/nf_conntrack', (err as Error).message, { cause: err });
      }
    }
    return readInNetns(this.opts.nodeNetns, signal);
  }
}

function readInNetns(netns: string, signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new CancelledError('reading the conntrack table cancelled'));
      return;
    }
    const what = `nsenter --net=${netns} cat /proc/net/nf_conntrack`;
    const child = spawn('nsenter', [`--net=${netns}`, '--', 'cat', '/proc/net/nf_conntrack'], { stdio: ['ignore', 'pipe', 'pipe'], signal, timeout: 30_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    child.stdout.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_CONNTRACK_BYTES) {
        tooBig = true;
        child.kill('SIGKILL');
        return;
      }
      out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.name === 'AbortError') reject(new CancelledError('reading the conntrack table cancelled', { cause: e }));
      else reject(new NetToolError(what, e.message, { cause: e }));
    });
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString('utf8').trim();
      if (tooBig) reject(new NetToolError(what, `the table is larger than ${MAX_CONNTRACK_BYTES} bytes`));
      else if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else if (/nf_conntrack: No such file/i.test(stderr)) resolve('');
      else reject(new NetToolError(what, `exit ${code ?? 'by signal'}: ${stderr}`));
    });
  });
}
