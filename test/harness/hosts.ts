/**
 * Simulated hosts for multi-node tests: network namespaces joined by one
 * bridge in the root namespace, with no default route and an nftables egress
 * guard, so that test traffic can never leave the machine.
 *
 * Vocabulary:
 * - run id: 6 random base-36 characters naming everything one makeHosts()
 *   call creates: namespaces `berth-t<id>-<i>`, bridge `bt<id>`, host-side
 *   veths `bt<id>v<i>` (peer `eth0` inside the namespace), guard chains
 *   `f_<id>` (forward) and `p_<id>` (postrouting).
 * - subnet: 10.213.<k>.0/24, claimed for the run through a lock file (so
 *   concurrent test runs never share one); `.1` is the bridge, hosts get
 *   `.2`, `.3`, ...
 * - guard: chains in the shared table `inet berth_test_guard` that drop any
 *   packet from or to the subnet (and opts.guardRanges) that would leave
 *   through an interface other than a test bridge or veth (`bt*`: this
 *   run's or a concurrent run's, all inside the machine).
 *
 * Lifecycle: makeHosts() writes a state file listing everything it will
 * create (under BERTH_TEST_STATE, default /run/berth-test), installs and
 * verifies the guard before any address exists, then creates the bridge,
 * namespaces, veths and addresses. cleanup() removes all of it, is
 * idempotent and works after a partial setup. A run that crashed leaves its
 * state file behind; reapStaleHosts() (called by the root hooks and by
 * makeHosts) removes what such dead runs made.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, tryRun, type RunOptions, type RunResult } from './exec.js';

export const GUARD_TABLE = 'berth_test_guard';
/** The names of every run's bridge and veths (`bt<id>`, `bt<id>v<i>`): the guard lets packets through those only. */
const BRIDGE_GLOB = 'bt*';
/** Test hosts take /24s from this /16. */
export const TEST_HOST_RANGE = '10.213.0.0/16';

export interface TestHost {
  /** host-<i>, i from 0 */
  name: string;
  /** Network namespace name (use with runIn or `ip netns exec`). */
  netns: string;
  /** IPv4 address of eth0 inside the namespace (no prefix length). */
  address: string;
  /** Host-side end of the veth, attached to the bridge. */
  veth: string;
}

export interface TestHosts {
  runId: string;
  hosts: TestHost[];
  /** Bridge in the root namespace joining the hosts. */
  bridge: string;
  /** The bridge's address (x.x.x.1), reachable from every host. */
  hostAddress: string;
  /** e.g. 10.213.7.0/24 */
  subnet: string;
  /** Removes namespaces, veths, bridge, guard chains and the subnet claim; idempotent. */
  cleanup(): Promise<void>;
}

export interface MakeHostsOptions {
  signal?: AbortSignal;
  /** More IPv4 ranges (CIDR) the guard keeps on the bridge, e.g. container or service ranges a test adds inside the hosts. */
  guardRanges?: string[];
}

interface HostsState {
  runId: string;
  pid: number;
  pidStart: string;
  subnetIndex: number;
  bridge: string;
  netns: string[];
  veths: string[];
  chains: string[];
}

function stateDir(): string {
  return process.env.BERTH_TEST_STATE ?? '/run/berth-test';
}

/** Start time of a process (field 22 of /proc/PID/stat), to tell a live owner from a reused PID. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function ownerAlive(pid: number, start: string): boolean {
  return processStartTime(pid) === start;
}

const live = new Map<string, TestHosts>();
const made = new Set<string>();

/** Run ids of every host set this process made (cleaned up or not); the leak check uses them to tell this run's links and namespaces from other runs'. */
export function madeRunIds(): ReadonlySet<string> {
  return made;
}

/** Host sets made by this process and not yet cleaned up (the root hooks clean these). */
export function liveHostSets(): TestHosts[] {
  return [...live.values()];
}

/** Runs `cmd args` inside a network namespace (`ip netns exec`); rejects on a non-zero exit. */
export function runIn(netns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', ['netns', 'exec', netns, cmd, ...args], opts);
}

/** Like runIn, but resolves with the exit code instead of rejecting. */
export function tryRunIn(netns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return tryRun('ip', ['netns', 'exec', netns, cmd, ...args], opts);
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

function parseCidr(cidr: string, field: string): { base: number; bits: number } {
  const m = CIDR.exec(cidr);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const bits = m ? Number(m[5]) : -1;
  if (!m || octets.some((o) => o > 255) || bits > 32) {
    throw new Error(`${field}: expected an IPv4 CIDR such as 10.244.0.0/16, got "${cidr}"`);
  }
  const base = octets.reduce((a, o) => a * 256 + o, 0);
  return { base: bits === 0 ? 0 : base - (base % 2 ** (32 - bits)), bits };
}

function overlaps(a: { base: number; bits: number }, b: { base: number; bits: number }): boolean {
  const bits = Math.min(a.bits, b.bits);
  const size = 2 ** (32 - bits);
  return Math.floor(a.base / size) === Math.floor(b.base / size);
}

/** IPv4 destinations routed on this machine (all tables), except default routes. */
async function routedPrefixes(): Promise<{ base: number; bits: number }[]> {
  const { stdout } = await run('ip', ['-4', '-j', 'route', 'show', 'table', 'all']);
  const routes = JSON.parse(stdout) as { dst?: string }[];
  const out: { base: number; bits: number }[] = [];
  for (const r of routes) {
    if (!r.dst || r.dst === 'default') continue;
    const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`;
    try {
      out.push(parseCidr(dst, 'route'));
    } catch {
      // not an IPv4 prefix we understand; ignore
    }
  }
  return out;
}

/** Claims a free 10.213.<k>.0/24 with an O_EXCL file; skips subnets routed on this machine. */
async function claimSubnet(runId: string): Promise<number> {
  const dir = join(stateDir(), 'subnets');
  await mkdir(dir, { recursive: true });
  const routed = await routedPrefixes();
  const start = randomBytes(1)[0] ?? 0;
  for (let i = 0; i < 256; i++) {
    const k = (start + i) % 256;
    const net = parseCidr(`10.213.${k}.0/24`, 'subnet');
    if (routed.some((r) => overlaps(r, net))) continue;
    try {
      const fh = await open(join(dir, String(k)), 'wx');
      await fh.writeFile(runId);
      await fh.close();
      return k;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  throw new Error(`failed to claim a test subnet: all 256 /24s of ${TEST_HOST_RANGE} are in use (stale claims in ${dir}?)`);
}

function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

function netnsExists(name: string): boolean {
  return existsSync(`/run/netns/${name}`);
}

function guardLock(): string {
  return join(stateDir(), 'guard.lock');
}

/** Removes a run's guard chains, and the table when no chains are left; serialized with other runs by flock. */
async function removeGuard(chains: readonly string[]): Promise<void> {
  if (chains.length === 0) return;
  const t = `inet ${GUARD_TABLE}`;
  const script = [
    'set -e',
    ...chains.map((c) => `if nft list chain ${t} ${c} >/dev/null 2>&1; then nft flush chain ${t} ${c}; nft delete chain ${t} ${c}; fi`),
    `if nft list table ${t} >/dev/null 2>&1 && ! nft list table ${t} | grep -q '^\\s*chain '; then nft delete table ${t}; fi`,
  ].join('\n');
  await mkdir(stateDir(), { recursive: true });
  await run('flock', [guardLock(), 'sh', '-c', script]);
}

interface NftRule {
  rule?: { chain: string; expr: unknown[] };
  chain?: { name: string; hook?: string; type?: string };
}

/**
 * True when the run's guard chains exist with their hooks and at least
 * `rulesPerChain` drop rules each. Used by makeHosts before any address is
 * configured, and by tests.
 */
export async function guardInstalled(runId: string, rulesPerChain = 2): Promise<boolean> {
  for (const [chain, hook] of [[`f_${runId}`, 'forward'], [`p_${runId}`, 'postrouting']] as const) {
    const res = await tryRun('nft', ['-j', 'list', 'chain', 'inet', GUARD_TABLE, chain]);
    if (res.code !== 0) return false;
    const items = (JSON.parse(res.stdout) as { nftables: NftRule[] }).nftables;
    const def = items.find((i) => i.chain?.name === chain)?.chain;
    if (def?.hook !== hook || def.type !== 'filter') return false;
    const drops = items.filter((i) => i.rule?.chain === chain && JSON.stringify(i.rule.expr).includes('"drop"'));
    if (drops.length < rulesPerChain) return false;
  }
  return true;
}

async function installGuard(runId: string, bridge: string, ranges: string[]): Promise<void> {
  if (!bridge.startsWith(BRIDGE_GLOB.slice(0, -1))) throw new Error(`refusing to guard bridge ${JSON.stringify(bridge)}: the guard lets through only "${BRIDGE_GLOB}"`);
  const t = `inet ${GUARD_TABLE}`;
  const lines = [`add table ${t}`];
  for (const [chain, hook] of [[`f_${runId}`, 'forward'], [`p_${runId}`, 'postrouting']] as const) {
    lines.push(`add chain ${t} ${chain} { type filter hook ${hook} priority 0; policy accept; }`);
    for (const range of ranges) {
      // Any test bridge ("bt*") keeps the packet inside this machine. Not only
      // the run's own: with bridge netfilter on, another run's bridged
      // packets pass this chain too, and dropping them broke concurrent runs.
      lines.push(`add rule ${t} ${chain} ip daddr ${range} oifname != "${BRIDGE_GLOB}" counter drop`);
      lines.push(`add rule ${t} ${chain} ip saddr ${range} oifname != "${BRIDGE_GLOB}" counter drop`);
    }
  }
  await mkdir(stateDir(), { recursive: true });
  // nft -f applies the whole file in one transaction: all rules or none.
  await run('flock', [guardLock(), 'nft', '-f', '-'], { input: lines.join('\n') + '\n' }).catch((err: Error) => {
    throw new Error(`failed to install the egress guard (nft table "${GUARD_TABLE}"): ${err.message}`, { cause: err });
  });
  if (!(await guardInstalled(runId, ranges.length * 2))) {
    throw new Error(`failed to install the egress guard: chains f_${runId}/p_${runId} in table "${GUARD_TABLE}" are missing or incomplete after nft -f`);
  }
}

async function disableIpv6(netns: string | undefined, ifname: string): Promise<void> {
  const path = `/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`;
  if (netns) {
    await runIn(netns, 'sh', ['-c', `[ ! -e ${path} ] || echo 1 > ${path}`]);
  } else if (existsSync(path)) {
    await writeFile(path, '1');
  }
}

/** Removes everything a state lists; keeps going past errors and reports them all at the end. */
async function removeAll(state: HostsState): Promise<void> {
  const problems: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };
  // A link may vanish between the check and the delete (deleting a namespace
  // destroys its veth pairs asynchronously): "not found" counts as done.
  const gone = (res: RunResult) => res.code === 0 || /Cannot find device|No such file|does not exist/i.test(res.stderr);
  const del = async (args: string[]) => {
    const res = await tryRun('ip', args);
    if (!gone(res)) throw new Error(`ip ${args.join(' ')}: exit ${res.code}: ${res.stderr.trim()}`);
  };
  for (const ns of state.netns) {
    if (netnsExists(ns)) await attempt(`delete netns "${ns}"`, () => del(['netns', 'delete', ns]));
  }
  for (const veth of state.veths) {
    if (linkExists(veth)) await attempt(`delete link "${veth}"`, () => del(['link', 'delete', veth]));
  }
  if (linkExists(state.bridge)) await attempt(`delete bridge "${state.bridge}"`, () => del(['link', 'delete', state.bridge]));
  await attempt('remove guard chains', () => removeGuard(state.chains));
  if (problems.length === 0) {
    const claim = join(stateDir(), 'subnets', String(state.subnetIndex));
    const owner = existsSync(claim) ? readFileSync(claim, 'utf8') : '';
    if (owner === state.runId) await rm(claim, { force: true });
    await rm(join(stateDir(), 'hosts', `${state.runId}.json`), { force: true });
  }
  if (problems.length > 0) throw new Error(`failed to clean up test hosts "${state.runId}": ${problems.join('; ')}`);
}

let reaped = false;

/** Cleans up host sets whose owning process is gone (a crashed or killed run); returns their run ids. */
export async function reapStaleHosts(): Promise<string[]> {
  const dir = join(stateDir(), 'hosts');
  if (!existsSync(dir)) return [];
  const done: string[] = [];
  for (const f of await readdir(dir)) {
    if (!f.endsWith('.json')) continue;
    let state: HostsState;
    try {
      state = JSON.parse(await readFile(join(dir, f), 'utf8')) as HostsState;
    } catch {
      continue;
    }
    if (ownerAlive(state.pid, state.pidStart)) continue;
    await removeAll(state);
    done.push(state.runId);
  }
  // Claims with no state file behind them (crash between claim and state write).
  const subnets = join(stateDir(), 'subnets');
  if (existsSync(subnets)) {
    for (const k of await readdir(subnets)) {
      const owner = (await readFile(join(subnets, k), 'utf8').catch(() => '')).trim();
      if (owner && !existsSync(join(dir, `${owner}.json`)) && !live.has(owner) && !claiming.has(owner)) await rm(join(subnets, k), { force: true });
    }
  }
  return done;
}

const claiming = new Set<string>();

/**
 * Makes `n` namespace hosts on one bridge. The egress guard is installed and
 * checked before any address is configured; a failure at any step removes
 * what was made and rejects.
 */
export async function makeHosts(n: number, opts: MakeHostsOptions = {}): Promise<TestHosts> {
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`makeHosts: n: expected a whole number from 1 to 200, got ${n}`);
  const extra = (opts.guardRanges ?? []).map((r, i) => {
    parseCidr(r, `guardRanges[${i}]`);
    return r;
  });
  if (!reaped) {
    reaped = true;
    await reapStaleHosts();
  }
  let runId: string;
  do {
    runId = BigInt(`0x${randomBytes(5).toString('hex')}`).toString(36).padStart(8, '0').slice(-6);
  } while (live.has(runId));
  claiming.add(runId);
  made.add(runId);
  let state: HostsState;
  try {
    const k = await claimSubnet(runId);
    state = {
      runId,
      pid: process.pid,
      pidStart: processStartTime(process.pid) ?? '',
      subnetIndex: k,
      bridge: `bt${runId}`,
      netns: Array.from({ length: n }, (_, i) => `berth-t${runId}-${i}`),
      veths: Array.from({ length: n }, (_, i) => `bt${runId}v${i}`),
      chains: [`f_${runId}`, `p_${runId}`],
    };
    await mkdir(join(stateDir(), 'hosts'), { recursive: true });
    await writeFile(join(stateDir(), 'hosts', `${runId}.json`), JSON.stringify(state));
  } finally {
    claiming.delete(runId);
  }
  const prefix = `10.213.${state.subnetIndex}`;
  const subnet = `${prefix}.0/24`;
  const cleanupOnce = (() => {
    let p: Promise<void> | undefined;
    return () => {
      p ??= removeAll(state).then(() => {
        live.delete(runId);
      }, (err: unknown) => {
        p = undefined;
        throw err;
      });
      return p;
    };
  })();
  const result: TestHosts = {
    runId,
    hosts: state.netns.map((netns, i) => ({ name: `host-${i}`, netns, address: `${prefix}.${i + 2}`, veth: state.veths[i] as string })),
    bridge: state.bridge,
    hostAddress: `${prefix}.1`,
    subnet,
    cleanup: cleanupOnce,
  };
  live.set(runId, result);

  const ip = (...args: string[]) => run('ip', args, { signal: opts.signal });
  try {
    await installGuard(runId, state.bridge, [subnet, ...extra]);
    await ip('link', 'add', state.bridge, 'type', 'bridge');
    await disableIpv6(undefined, state.bridge);
    await ip('link', 'set', state.bridge, 'up');
    for (const h of result.hosts) {
      await ip('netns', 'add', h.netns);
      await ip('link', 'add', h.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.netns);
      await disableIpv6(undefined, h.veth);
      await ip('link', 'set', h.veth, 'master', state.bridge, 'up');
      await disableIpv6(h.netns, 'eth0');
      await ip('-n', h.netns, 'link', 'set', 'lo', 'up');
      await ip('-n', h.netns, 'link', 'set', 'eth0', 'up');
    }
    // Addresses last: the guard is in place and checked.
    if (!(await guardInstalled(runId, (1 + extra.length) * 2))) throw new Error(`egress guard for "${runId}" disappeared during setup`);
    await ip('addr', 'add', `${result.hostAddress}/24`, 'dev', state.bridge);
    for (const h of result.hosts) {
      await ip('-n', h.netns, 'addr', 'add', `${h.address}/24`, 'dev', 'eth0');
      const { stdout } = await ip('-n', h.netns, '-4', 'route', 'show', 'default');
      if (stdout.trim() !== '') throw new Error(`namespace "${h.netns}" has a default route: ${stdout.trim()}`);
    }
    return result;
  } catch (err) {
    await cleanupOnce().catch(() => undefined);
    throw new Error(`failed to make ${n} test hosts: ${(err as Error).message}`, { cause: err });
  }
}
