/**
 * Per-endpoint traffic figures, counted on the node that runs the endpoint
 * (so the node that reports a replica's CPU also reports its traffic).
 *
 * The node's own nft table `ip berth_traffic` holds, per local endpoint
 * (a running workload replica with a cluster address) and per port, two
 * named counters, in a filter chain at the forward hook (traffic routed to
 * the endpoint through the node: via a service virtual IP, the routing mesh,
 * a published port or the endpoint's address from another node) and one at
 * the output hook (clients on the node itself):
 *
 *   c_<id>_<port>_<proto>  new connections: `ct state new` (TCP and UDP flows)
 *   r_<id>_<port>_<proto>  requests: client->server TCP segments with data
 *                          and PSH set (`ct direction original tcp flags &
 *                          psh == psh`), about one per HTTP/1.x request; for
 *                          UDP every client->server datagram.
 *
 * Open connections are the ESTABLISHED TCP entries of the node's conntrack
 * table whose reply comes from the endpoint's address and port.
 *
 * Not seen: container -> container traffic on the same bridge straight to the
 * peer's address (switched at layer 2, it never reaches the IP hooks).
 *
 * Lifecycle: `TrafficMeter.sample()` (every second from `run()`) replaces the
 * table with one `nft -f` when the set of local endpoints changed, reads the
 * counters and the conntrack table, and keeps a short history per endpoint.
 * Replacing the table resets its counters: the values read just before are
 * kept as offsets, so the cumulative figures go on; a counter that still goes
 * down (someone flushed the table) starts a new baseline, never a negative
 * rate. `traffic(id)` gives the sampler (agent/metrics) the rate over the
 * last second; `report()` gives the NATS publisher the rate over the last
 * 2 s, published every 2 s by `run()`. When reading keeps failing, figures
 * older than 5 s are not repeated: the sampler gets 0 and the report leaves
 * the endpoint out (the controller drops it after 6 s).
 */
import { InternalError, TRAFFIC_VERSION, messageOf, parseIpv4, pause, type Logger } from '../../lib/index.js';
import type { EndpointTraffic, NodeTraffic } from '../../proto/gen/berth/v1/traffic.js';
import { ContainerState, type Container } from '../../proto/gen/berth/v1/types.js';
import type { ConntrackEntry, ConntrackReader, NetOps } from '../sys/index.js';

/** The traffic table could not be installed, or reads back without the expected counters. */
export class TrafficTableError extends InternalError {
  override name = 'TrafficTableError';
}

export const TRAFFIC_NFT_FAMILY = 'ip';
export const TRAFFIC_NFT_TABLE = 'berth_traffic';

/** One local endpoint as the table needs it. */
export interface TrafficEndpoint {
  containerId: string;
  workload: string;
  address: string;
  ports: readonly { port: number; protocol: string }[];
}

const ID = /^[0-9a-f]{64}$/;

/** The name of an endpoint port's counter: `c_` (new connections) or `r_` (requests). */
export function trafficCounterName(kind: 'c' | 'r', containerId: string, port: number, protocol: string): string {
  return `${kind}_${containerId}_${port}_${protocol}`;
}

function checkEndpoint(e: TrafficEndpoint): void {
  if (!ID.test(e.containerId)) throw new Error(`refusing container id ${JSON.stringify(e.containerId)} in an nft script: expected 64 hex characters`);
  if (parseIpv4(e.address) === undefined) throw new Error(`refusing endpoint address ${JSON.stringify(e.address)} of container ${e.containerId.slice(0, 12)} in an nft script: expected an IPv4 address`);
  for (const p of e.ports) {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535 || (p.protocol !== 'tcp' && p.protocol !== 'udp')) {
      throw new Error(`refusing port ${JSON.stringify(p.port)}/${JSON.stringify(p.protocol)} of container ${e.containerId.slice(0, 12)} in an nft script: expected 1-65535 and "tcp" or "udp"`);
    }
  }
}

/** The counter names the table holds for `endpoints`, sorted. */
export function expectedTrafficCounters(endpoints: readonly TrafficEndpoint[]): string[] {
  const out = new Set<string>();
  for (const e of endpoints) for (const p of e.ports) for (const k of ['c', 'r'] as const) out.add(trafficCounterName(k, e.containerId, p.port, p.protocol));
  return [...out].sort();
}

/** The nft script that replaces `ip berth_traffic` atomically with the table for `endpoints`. Pure; throws on any value it will not write. */
export function renderTrafficTable(endpoints: readonly TrafficEndpoint[]): string {
  const t = `${TRAFFIC_NFT_FAMILY} ${TRAFFIC_NFT_TABLE}`;
  const counters: string[] = [];
  const rules: string[] = [];
  const seen = new Set<string>();
  for (const e of [...endpoints].sort((a, b) => a.containerId.localeCompare(b.containerId))) {
    checkEndpoint(e);
    for (const p of [...e.ports].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol))) {
      const c = trafficCounterName('c', e.containerId, p.port, p.protocol);
      if (seen.has(c)) continue;
      seen.add(c);
      const r = trafficCounterName('r', e.containerId, p.port, p.protocol);
      counters.push(`  counter ${c} {}`, `  counter ${r} {}`);
      const match = `ip daddr ${e.address} ${p.protocol} dport ${p.port}`;
      rules.push(`${match} ct state new counter name "${c}"`);
      rules.push(p.protocol === 'tcp' ? `${match} ct direction original tcp flags & psh == psh counter name "${r}"` : `${match} ct direction original counter name "${r}"`);
    }
  }
  const chain = (name: string, head: string) => [`  chain ${name} {`, `    ${head}`, ...rules.map((x) => `    ${x}`), '  }'];
  return [
    `table ${t} {}`,
    `delete table ${t}`,
    `table ${t} {`,
    ...counters,
    ...chain('forward', 'type filter hook forward priority filter - 10; policy accept;'),
    ...chain('output', 'type filter hook output priority filter - 10; policy accept;'),
    '}',
    '',
  ].join('\n');
}

/** The packet counts of the named counters in `nft -j list table` output. */
export function trafficCounterValues(items: readonly unknown[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const i of items) {
    const c = (i as { counter?: { name?: unknown; packets?: unknown } }).counter;
    if (!c || typeof c.name !== 'string' || typeof c.packets !== 'number' || !Number.isFinite(c.packets) || c.packets < 0) continue;
    out.set(c.name, c.packets);
  }
  return out;
}

/** Established TCP connections per `address:port` of the replying side (the endpoint after any DNAT). */
export function openConnections(entries: readonly ConntrackEntry[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of entries) {
    if (e.protocol !== 'tcp' || e.state !== 'ESTABLISHED') continue;
    const key = `${e.reply.src}:${e.reply.sport}`;
    out.set(key, (out.get(key) ?? 0) + 1);
  }
  return out;
}

/** The local endpoints among `containers`: running workload replicas with a cluster address and ports. */
export function localTrafficEndpoints(containers: readonly Container[]): TrafficEndpoint[] {
  const out: TrafficEndpoint[] = [];
  for (const c of containers) {
    const address = c.status?.ipAddress ?? '';
    const ports = (c.spec?.ports ?? []).map((p) => ({ port: p.container, protocol: p.protocol === 'udp' ? 'udp' : 'tcp' }));
    if (c.workload === '' || address === '' || ports.length === 0 || c.status?.state !== ContainerState.CONTAINER_STATE_RUNNING) continue;
    if (!ID.test(c.id) || parseIpv4(address) === undefined || ports.some((p) => !Number.isInteger(p.port) || p.port < 1 || p.port > 65535)) continue;
    out.push({ containerId: c.id, workload: c.workload, address, ports });
  }
  return out.sort((a, b) => a.containerId.localeCompare(b.containerId));
}

/** One reading of an endpoint's cumulative counters. */
export interface TrafficReading {
  atMs: number;
  requests: number;
  connections: number;
}

/**
 * The rate of the newest reading over about `windowMs`: from the oldest
 * reading not older than `windowMs` (plus a quarter for timer jitter) to the
 * newest. 0 with fewer than two readings; never negative.
 */
export function trafficRates(history: readonly TrafficReading[], windowMs: number): { requestsPerSecond: number; connectionsPerSecond: number } {
  const last = history[history.length - 1];
  if (last === undefined) return { requestsPerSecond: 0, connectionsPerSecond: 0 };
  const from = history.find((h) => h.atMs >= last.atMs - windowMs * 1.25 && h.atMs < last.atMs);
  if (from === undefined) return { requestsPerSecond: 0, connectionsPerSecond: 0 };
  const s = (last.atMs - from.atMs) / 1000;
  return {
    requestsPerSecond: Math.max(0, (last.requests - from.requests) / s),
    connectionsPerSecond: Math.max(0, (last.connections - from.connections) / s),
  };
}

/**
 * Adds `reading` to `history` (oldest first) and drops readings older than
 * `keepMs`; a reading below the previous one (counters were reset) clears
 * the history first: it is a new baseline.
 */
export function pushReading(history: TrafficReading[], reading: TrafficReading, keepMs: number): void {
  const prev = history[history.length - 1];
  if (prev !== undefined && (reading.requests < prev.requests || reading.connections < prev.connections || reading.atMs <= prev.atMs)) history.length = 0;
  history.push(reading);
  while (history.length > 0 && history[0]!.atMs < reading.atMs - keepMs) history.shift();
}

export interface TrafficMeterOptions {
  node: string;
  ops: Pick<NetOps, 'nftApply' | 'nftListTable' | 'nftDeleteTable'>;
  conntrack: ConntrackReader;
  /** The node's containers (the container manager). */
  containers: { list(): Container[] };
  logger: Logger;
  /** Clock (tests). */
  now?: () => number;
}

interface EndpointState {
  endpoint: TrafficEndpoint;
  history: TrafficReading[];
  open: number;
}

const KEEP_MS = 5000;
/** Figures whose newest reading is older than this (sampling keeps failing) are reported as 0, not repeated. */
const STALE_MS = 5000;

export class TrafficMeter {
  private readonly log: Logger;
  private readonly now: () => number;
  private applied = '';
  private appliedCounters: string[] = [];
  /** Counter totals from before the last table replacement. */
  private offsets = new Map<string, number>();
  private endpoints = new Map<string, EndpointState>();
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly opts: TrafficMeterOptions) {
    this.log = opts.logger.child({ component: 'traffic' });
    this.now = opts.now ?? Date.now;
  }

  /** Brings the table in line with the local endpoints and reads the counters and open connections once. Calls are serialized. */
  sample(opts: { signal?: AbortSignal } = {}): Promise<void> {
    const run = () => this.sampleNow(opts.signal);
    const p = this.running.then(run, run);
    this.running = p.then(() => undefined, () => undefined);
    return p;
  }

  private async readCounters(): Promise<Map<string, number>> {
    return trafficCounterValues((await this.opts.ops.nftListTable(TRAFFIC_NFT_FAMILY, TRAFFIC_NFT_TABLE)) ?? []);
  }

  private async sampleNow(signal: AbortSignal | undefined): Promise<void> {
    const endpoints = localTrafficEndpoints(this.opts.containers.list());
    const script = renderTrafficTable(endpoints);
    if (script !== this.applied) {
      // Keep what the old counters hold: replacing the table zeroes them.
      const want = expectedTrafficCounters(endpoints);
      const before = this.applied === '' || want.length === 0 ? new Map<string, number>() : await this.readCounters();
      const offsets = new Map<string, number>();
      for (const name of want) offsets.set(name, (this.offsets.get(name) ?? 0) + (before.get(name) ?? 0));
      this.applied = '';
      try {
        await this.opts.ops.nftApply(script);
      } catch (err) {
        throw new TrafficTableError(`failed to install the traffic table ${TRAFFIC_NFT_FAMILY} ${TRAFFIC_NFT_TABLE}: ${messageOf(err)}`, { cause: err });
      }
      this.offsets = offsets;
      this.applied = script;
      this.appliedCounters = want;
      this.log.info('traffic table installed', { endpoints: endpoints.length, counters: want.length });
    }
    if (endpoints.length === 0) {
      // Nothing to count: skip reading the counters and the (possibly large) conntrack table.
      this.endpoints = new Map();
      return;
    }
    const values = await this.readCounters();
    const missing = this.appliedCounters.filter((n) => !values.has(n));
    if (missing.length > 0) {
      this.applied = '';
      throw new TrafficTableError(`failed to read the traffic table ${TRAFFIC_NFT_FAMILY} ${TRAFFIC_NFT_TABLE}: counters ${JSON.stringify(missing.slice(0, 4))} are missing; it will be installed again`);
    }
    const open = openConnections(await this.opts.conntrack.entries({ signal }));
    const at = this.now();
    const next = new Map<string, EndpointState>();
    for (const e of endpoints) {
      const st = this.endpoints.get(e.containerId) ?? { endpoint: e, history: [], open: 0 };
      st.endpoint = e;
      let requests = 0;
      let connections = 0;
      st.open = 0;
      for (const p of e.ports) {
        const total = (kind: 'c' | 'r') => {
          const n = trafficCounterName(kind, e.containerId, p.port, p.protocol);
          return (this.offsets.get(n) ?? 0) + (values.get(n) ?? 0);
        };
        requests += total('r');
        connections += total('c');
        if (p.protocol === 'tcp') st.open += open.get(`${e.address}:${p.port}`) ?? 0;
      }
      pushReading(st.history, { atMs: at, requests, connections }, KEEP_MS);
      next.set(e.containerId, st);
    }
    this.endpoints = next;
  }

  /** Requests per second over the last second and open connections of a local endpoint (agent/metrics TrafficSource). */
  traffic(containerId: string): { requestsPerSecond: number; connections: number } | undefined {
    const st = this.endpoints.get(containerId);
    if (!st) return undefined;
    if (this.stale(st)) return { requestsPerSecond: 0, connections: 0 };
    return { requestsPerSecond: trafficRates(st.history, 1000).requestsPerSecond, connections: st.open };
  }

  private stale(st: EndpointState): boolean {
    return this.now() - (st.history[st.history.length - 1]?.atMs ?? -Infinity) > STALE_MS;
  }

  /** Every local endpoint's figures over the last `windowMs`, as published on NATS (endpoints whose counters could not be read lately are left out). */
  report(windowMs = 2000): NodeTraffic {
    const endpoints: EndpointTraffic[] = [];
    let newest = 0;
    for (const st of this.endpoints.values()) {
      if (this.stale(st)) continue;
      const r = trafficRates(st.history, windowMs);
      newest = Math.max(newest, st.history[st.history.length - 1]?.atMs ?? 0);
      endpoints.push({
        workload: st.endpoint.workload, containerId: st.endpoint.containerId, address: st.endpoint.address,
        requestsPerSecond: r.requestsPerSecond, connectionsPerSecond: r.connectionsPerSecond, openConnections: st.open,
      });
    }
    return { version: TRAFFIC_VERSION, node: this.opts.node, unixMs: newest || this.now(), endpoints };
  }

  /**
   * Samples every `sampleMs` (default 1000) and publishes a report every
   * `publishEvery` samples (default 2) until `signal` aborts; failures are
   * logged and retried.
   */
  async run(sink: { publishTraffic(t: NodeTraffic): boolean }, signal: AbortSignal, opts: { sampleMs?: number; publishEvery?: number } = {}): Promise<void> {
    const every = opts.publishEvery ?? 2;
    let n = 0;
    while (!signal.aborted) {
      try {
        await this.sample({ signal });
      } catch (err) {
        if (!signal.aborted) this.log.error('failed to read traffic counters', { reason: messageOf(err) });
      }
      if (++n % every === 0 && !signal.aborted) {
        const r = this.report(every * (opts.sampleMs ?? 1000));
        if (r.endpoints.length > 0) sink.publishTraffic(r);
      }
      await pause(opts.sampleMs ?? 1000, signal);
    }
  }

  /** Deletes the table (agent --cleanup). */
  async clear(): Promise<void> {
    await this.running;
    await this.opts.ops.nftDeleteTable(TRAFFIC_NFT_FAMILY, TRAFFIC_NFT_TABLE);
    this.applied = '';
    this.appliedCounters = [];
    this.offsets = new Map();
  }
}
