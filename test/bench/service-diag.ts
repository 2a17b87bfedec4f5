/**
 * `--diagnose` for test/bench/service.ts: what the kernel counted while one
 * wrk run went on, so that a slow round can be told apart from a fast one by
 * evidence (issue 7's cross-node stalls).
 *
 * Vocabulary:
 * - place: a network namespace (by path) whose counters are read: the
 *   client's container, the nodes, the server's container, and the root
 *   namespace (where the bridge joining the namespace hosts lives; with bridge
 *   netfilter on, its conntrack sees every frame bridged between the hosts).
 * - snapshot: `nstat -asz` (absolute TCP/IP counters, history left alone)
 *   and `conntrack -S` (per-CPU conntrack statistics, summed) of every place,
 *   plus the packet counts of the drop rules of the harness's egress guard.
 *
 * Lifecycle: `snapshot()` before and after a run, `describeDelta()` of the
 * two; a counter that did not move is left out.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface Place { name: string; netnsPath: string }

export interface Snapshot {
  /** place name -> counter name -> value */
  nstat: Map<string, Map<string, number>>;
  conntrack: Map<string, Map<string, number>>;
  /** place name -> TCP sockets in TIME_WAIT now (`ss -s`). */
  timewait: Map<string, number>;
  /** Packets dropped by the egress guard's rules (all runs' chains). */
  guardDrops: number;
  /** The machine's CPU time so far (/proc/stat, clock ticks): user+nice, system, softirq, idle+iowait. */
  cpu: { user: number; system: number; softirq: number; idle: number };
}

/** The first line of /proc/stat as user+nice, system, softirq, idle+iowait ticks. */
export function parseProcStat(text: string): Snapshot['cpu'] {
  const f = (/^cpu\s+(.*)$/m.exec(text)?.[1] ?? '').trim().split(/\s+/).map(Number);
  const at = (i: number) => f[i] ?? 0;
  return { user: at(0) + at(1), system: at(2), softirq: at(6), idle: at(3) + at(4) };
}

function capture(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('error', () => resolve(''));
    child.on('close', () => resolve(out));
  });
}

function inNetns(path: string, cmd: string, args: string[]): Promise<string> {
  return path === '' ? capture(cmd, args) : capture('nsenter', [`--net=${path}`, cmd, ...args]);
}

/** `nstat -asz` text -> counter name -> value. */
export function parseNstat(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s+(\d+)/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** `conntrack -S` text (one line per CPU, `key=value ...`) -> key -> sum over CPUs. */
export function parseConntrackStats(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/(\w+)=(\d+)/g)) {
    if (m[1] === 'cpu') continue;
    out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

/** Sum of the packet counters of rules that drop, in `nft list table` text. */
export function parseDropPackets(text: string): number {
  let n = 0;
  for (const m of text.matchAll(/counter packets (\d+) bytes \d+ drop/g)) n += Number(m[1]);
  return n;
}

export async function snapshot(places: readonly Place[]): Promise<Snapshot> {
  const nstat = new Map<string, Map<string, number>>();
  const conntrack = new Map<string, Map<string, number>>();
  const timewait = new Map<string, number>();
  await Promise.all(places.map(async (p) => {
    const [a, b, c] = await Promise.all([inNetns(p.netnsPath, 'nstat', ['-asz']), inNetns(p.netnsPath, 'conntrack', ['-S']), inNetns(p.netnsPath, 'ss', ['-s'])]);
    nstat.set(p.name, parseNstat(a));
    conntrack.set(p.name, parseConntrackStats(b));
    timewait.set(p.name, Number(/timewait (\d+)/.exec(c)?.[1] ?? NaN));
  }));
  const guardDrops = parseDropPackets(await capture('nft', ['list', 'table', 'inet', 'berth_test_guard']));
  return { nstat, conntrack, timewait, guardDrops, cpu: parseProcStat(readFileSync('/proc/stat', 'utf8')) };
}

/** The counters worth showing: failures, drops, retransmits, TIME_WAIT handling, resets, opens. */
const NSTAT_INTEREST = /^(TcpActiveOpens|TcpPassiveOpens|TcpAttemptFails|TcpEstabResets|TcpRetransSegs|TcpOutRsts|TcpInErrs|IpOutNoRoutes|IpInDiscards|IcmpOutDestUnreachs|IcmpInDestUnreachs)$|^TcpExt(TW|PAWS|Listen|TCPTimeouts|TCPSynRetrans|TCPChallengeACK|TCPSYNChallenge|TCPACKSkipped|TCPReqQFullDrop|TCPAbort|TCPBacklogDrop|TCPMemoryPressures|TCPRcvQDrop|LockDroppedIcmps|OutOfWindowIcmps|TCPTimeWaitOverflow|TCPOrigDataSent$|TCPDeliveredCE)/;
const CT_INTEREST = /^(insert|insert_failed|drop|early_drop|error|invalid|search_restart|clash_resolve|chaintoolong)$/;

/** One line per place: the counters that moved between `a` and `b`. */
export function describeDelta(places: readonly Place[], a: Snapshot, b: Snapshot): string[] {
  const lines: string[] = [];
  for (const p of places) {
    const parts: string[] = [];
    const na = a.nstat.get(p.name) ?? new Map<string, number>();
    for (const [k, v] of b.nstat.get(p.name) ?? []) {
      const d = v - (na.get(k) ?? 0);
      if (d !== 0 && NSTAT_INTEREST.test(k)) parts.push(`${k.replace(/^TcpExt/, '')}=${d}`);
    }
    const ca = a.conntrack.get(p.name) ?? new Map<string, number>();
    for (const [k, v] of b.conntrack.get(p.name) ?? []) {
      const d = v - (ca.get(k) ?? 0);
      if (d !== 0 && CT_INTEREST.test(k)) parts.push(`ct.${k}=${d}`);
    }
    lines.push(`    ${p.name}: ${parts.length > 0 ? parts.join(' ') : '-'} (TIME_WAIT sockets before/after: ${a.timewait.get(p.name) ?? '?'}/${b.timewait.get(p.name) ?? '?'})`);
  }
  const c = { user: b.cpu.user - a.cpu.user, system: b.cpu.system - a.cpu.system, softirq: b.cpu.softirq - a.cpu.softirq, idle: b.cpu.idle - a.cpu.idle };
  const total = c.user + c.system + c.softirq + c.idle;
  if (total > 0) {
    const pc = (x: number) => `${Math.round((100 * x) / total)}%`;
    lines.push(`    machine CPU (all processes): user ${pc(c.user)} system ${pc(c.system)} softirq ${pc(c.softirq)} idle ${pc(c.idle)}`);
  }
  const g = b.guardDrops - a.guardDrops;
  if (g !== 0) lines.push(`    egress guard drops: ${g}`);
  return lines;
}

/** wrk's latency max in ms (the thread stats' Max column), or NaN. */
export function wrkLatencyMaxMs(text: string): number {
  const m = /Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b/.exec(text);
  if (!m) return NaN;
  const f = { us: 1e-3, ms: 1, s: 1e3, m: 6e4 }[m[2] as 'us' | 'ms' | 's' | 'm'];
  return Number(m[1]) * f;
}

/** wrk's socket errors line, or "". */
export function wrkSocketErrors(text: string): string {
  return /Socket errors:[^\n]*/.exec(text)?.[0] ?? '';
}
