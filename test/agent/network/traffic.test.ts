/**
 * Traffic figures (agent/network/traffic.ts): the `ip berth_traffic` script
 * is a pure function of the local endpoints (checked, and hostile values
 * refused), counters and conntrack entries turn into per-endpoint figures,
 * rates survive a table replacement (a new baseline, never a negative rate),
 * and TrafficMeter with the real nft and conntrack in a namespace host counts
 * requests, new connections and open connections of a busybox httpd that a
 * busybox wget client reaches through the node (forward hook) and from the
 * node itself (output hook).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TRAFFIC_NFT_TABLE, TrafficMeter, TrafficTableError, expectedTrafficCounters, localTrafficEndpoints, openConnections, pushReading, renderTrafficTable,
  trafficCounterName, trafficCounterValues, trafficRates, type TrafficEndpoint, type TrafficReading,
} from '../../../agent/network/index.js';
import { MetricsSampler } from '../../../agent/metrics/index.js';
import { LinuxNetOps, ProcConntrackReader, type ConntrackEntry, type NetOps } from '../../../agent/sys/index.js';
import { ContainerStats } from '../../../proto/gen/berth/v1/containers.js';
import { TRAFFIC_VERSION, silentLogger } from '../../../lib/index.js';
import { Container } from '../../../proto/gen/berth/v1/types.js';
import { makeHosts, run, tryRun, tryRunIn, waitFor, type TestHosts } from '../../harness/index.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

function ep(id: string, address: string, ports: { port: number; protocol: string }[] = [{ port: 80, protocol: 'tcp' }]): TrafficEndpoint {
  return { containerId: id, workload: 'web', address, ports };
}

function replica(id: string, address: string, extra: { state?: string; workload?: string; ports?: { container: number; protocol?: string }[] } = {}): Container {
  return Container.fromJSON({
    id, name: `web-${id.slice(0, 4)}`, workload: extra.workload ?? 'web',
    spec: { image: 'busybox', ports: extra.ports ?? [{ container: 80, protocol: 'tcp' }] },
    status: { state: extra.state ?? 'CONTAINER_STATE_RUNNING', ipAddress: address },
  });
}

describe('renderTrafficTable', () => {
  it('declares two named counters per endpoint port and counts new connections and data segments in forward and output', () => {
    const s = renderTrafficTable([ep(B, '10.244.2.3', [{ port: 53, protocol: 'udp' }]), ep(A, '10.244.1.2')]);
    assert.ok(s.startsWith('table ip berth_traffic {}\ndelete table ip berth_traffic\ntable ip berth_traffic {\n'), 'replaces the table as a whole');
    const lines = s.split('\n').map((l) => l.trim());
    for (const c of [`counter c_${A}_80_tcp {}`, `counter r_${A}_80_tcp {}`, `counter c_${B}_53_udp {}`, `counter r_${B}_53_udp {}`]) assert.ok(lines.includes(c), c);
    const tcpNew = `ip daddr 10.244.1.2 tcp dport 80 ct state new counter name "c_${A}_80_tcp"`;
    const tcpReq = `ip daddr 10.244.1.2 tcp dport 80 ct direction original tcp flags & psh == psh counter name "r_${A}_80_tcp"`;
    const udpReq = `ip daddr 10.244.2.3 udp dport 53 ct direction original counter name "r_${B}_53_udp"`;
    for (const r of [tcpNew, tcpReq, udpReq]) assert.equal(lines.filter((l) => l === r).length, 2, `${r} in forward and output:\n${s}`);
    assert.match(s, /chain forward \{\n\s+type filter hook forward priority filter - 10; policy accept;/);
    assert.match(s, /chain output \{\n\s+type filter hook output priority filter - 10; policy accept;/);
    assert.deepEqual(expectedTrafficCounters([ep(A, '10.244.1.2')]), [`c_${A}_80_tcp`, `r_${A}_80_tcp`]);
  });

  it('renders an empty table when there are no endpoints', () => {
    assert.doesNotMatch(renderTrafficTable([]), /counter/);
  });

  it('refuses hostile container ids, addresses, ports and protocols', () => {
    assert.throws(() => renderTrafficTable([ep('abc"; flush ruleset; "', '10.244.1.2')]), /refusing container id .* expected 64 hex characters/);
    assert.throws(() => renderTrafficTable([ep(A, '10.244.1.2 accept; flush ruleset')]), /refusing endpoint address "10\.244\.1\.2 accept; flush ruleset" of container aaaaaaaaaaaa/);
    assert.throws(() => renderTrafficTable([ep(A, '10.244.1.2', [{ port: 0, protocol: 'tcp' }])]), /refusing port 0\/"tcp" .* expected 1-65535/);
    assert.throws(() => renderTrafficTable([ep(A, '10.244.1.2', [{ port: 80.5, protocol: 'tcp' }])]), /refusing port 80\.5/);
    assert.throws(() => renderTrafficTable([ep(A, '10.244.1.2', [{ port: 80, protocol: 'sctp' }])]), /refusing port 80\/"sctp" .* "tcp" or "udp"/);
  });
});

describe('traffic figures from nft and conntrack', () => {
  it('reads packet counts of named counters and ignores other items and bad values', () => {
    const items = [
      { metainfo: { version: '1.0.6' } },
      { counter: { family: 'ip', name: trafficCounterName('r', A, 80, 'tcp'), table: 'berth_traffic', packets: 12, bytes: 900 } },
      { counter: { family: 'ip', name: trafficCounterName('c', A, 80, 'tcp'), table: 'berth_traffic', packets: 3, bytes: 180 } },
      { counter: { name: 'weird', packets: -1 } },
      { counter: { name: 'nan', packets: 'x' } },
      { rule: { chain: 'forward', expr: [] } },
    ];
    assert.deepEqual(trafficCounterValues(items), new Map([[`r_${A}_80_tcp`, 12], [`c_${A}_80_tcp`, 3]]));
  });

  it('counts established TCP connections by the replying address and port', () => {
    const e = (protocol: string, state: string, src: string, sport: number): ConntrackEntry => ({
      protocol, state, original: { src: '10.0.0.9', dst: '10.96.0.1', sport: 40000, dport: 80 }, reply: { src, dst: '10.0.0.9', sport, dport: 40000 },
    });
    const open = openConnections([
      e('tcp', 'ESTABLISHED', '10.244.1.2', 80), e('tcp', 'ESTABLISHED', '10.244.1.2', 80), e('tcp', 'TIME_WAIT', '10.244.1.2', 80),
      e('tcp', 'ESTABLISHED', '10.244.1.2', 443), e('udp', '', '10.244.1.2', 80),
    ]);
    assert.deepEqual(open, new Map([['10.244.1.2:80', 2], ['10.244.1.2:443', 1]]));
  });

  it('takes running workload replicas with an address and ports as local endpoints', () => {
    const got = localTrafficEndpoints([
      replica(B, '10.244.1.3', { ports: [{ container: 53, protocol: 'udp' }, { container: 8080 }] }),
      replica(A, '10.244.1.2'),
      replica('c'.repeat(64), ''),
      replica('d'.repeat(64), '10.244.1.4', { state: 'CONTAINER_STATE_EXITED' }),
      replica('e'.repeat(64), '10.244.1.5', { workload: '' }),
      replica('f'.repeat(64), '10.244.1.6', { ports: [] }),
      replica('short', '10.244.1.7'),
    ]);
    assert.deepEqual(got, [
      { containerId: A, workload: 'web', address: '10.244.1.2', ports: [{ port: 80, protocol: 'tcp' }] },
      { containerId: B, workload: 'web', address: '10.244.1.3', ports: [{ port: 53, protocol: 'udp' }, { port: 8080, protocol: 'tcp' }] },
    ]);
  });
});

describe('traffic rates', () => {
  const r = (atMs: number, requests: number, connections = 0): TrafficReading => ({ atMs, requests, connections });

  it('divides the counter change by the time between the readings of the window', () => {
    const h = [r(0, 0, 0), r(1000, 10, 1), r(2000, 30, 3)];
    assert.deepEqual(trafficRates(h, 1000), { requestsPerSecond: 20, connectionsPerSecond: 2 });
    assert.deepEqual(trafficRates(h, 2000), { requestsPerSecond: 15, connectionsPerSecond: 1.5 });
    assert.deepEqual(trafficRates([r(0, 5)], 1000), { requestsPerSecond: 0, connectionsPerSecond: 0 }, 'one reading: no rate yet');
    assert.deepEqual(trafficRates([], 1000), { requestsPerSecond: 0, connectionsPerSecond: 0 });
  });

  it('starts a new baseline when a counter goes down, and keeps only recent readings', () => {
    const h: TrafficReading[] = [];
    pushReading(h, r(0, 100), 5000);
    pushReading(h, r(1000, 120), 5000);
    pushReading(h, r(2000, 3), 5000);
    assert.deepEqual(h, [r(2000, 3)]);
    assert.deepEqual(trafficRates(h, 1000), { requestsPerSecond: 0, connectionsPerSecond: 0 });
    for (let t = 3000; t <= 10_000; t += 1000) pushReading(h, r(t, t / 100), 5000);
    assert.equal(h[0]!.atMs, 5000);
  });
});

/** An in-memory nft: counters zeroed by every nftApply, as the kernel does when the table is replaced. */
class MemoryNft implements Pick<NetOps, 'nftApply' | 'nftListTable' | 'nftDeleteTable'> {
  counters = new Map<string, number>();
  applied: string[] = [];
  async nftApply(script: string): Promise<void> {
    this.applied.push(script);
    this.counters = new Map([...script.matchAll(/counter ([a-z]_[0-9a-f]{64}_\d+_(?:tcp|udp)) \{\}/g)].map((m) => [m[1]!, 0]));
  }
  async nftListTable(): Promise<unknown[] | undefined> {
    return [...this.counters].map(([name, packets]) => ({ counter: { name, packets, bytes: 0 } }));
  }
  async nftDeleteTable(): Promise<void> {
    this.counters.clear();
  }
  add(name: string, n: number): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + n);
  }
}

describe('TrafficMeter (in-memory nft)', () => {
  it('keeps counting across a table replacement and reports per-endpoint rates', async () => {
    const nft = new MemoryNft();
    let now = 0;
    let list = [replica(A, '10.244.1.2')];
    const meter = new TrafficMeter({ node: 'n1', ops: nft, conntrack: { entries: async () => [] }, containers: { list: () => list }, logger: silentLogger(), now: () => now });
    await meter.sample();
    assert.equal(nft.applied.length, 1);
    nft.add(`r_${A}_80_tcp`, 10);
    nft.add(`c_${A}_80_tcp`, 2);
    now = 1000;
    await meter.sample();
    assert.deepEqual(meter.traffic(A), { requestsPerSecond: 10, connections: 0 });
    nft.add(`r_${A}_80_tcp`, 10);
    // A new endpoint: the table is replaced (counters zeroed); A's 20 requests so far carry over.
    list = [replica(A, '10.244.1.2'), replica(B, '10.244.1.3')];
    now = 2000;
    await meter.sample();
    assert.equal(nft.applied.length, 2);
    assert.deepEqual(meter.traffic(A), { requestsPerSecond: 10, connections: 0 });
    assert.deepEqual(meter.traffic(B), { requestsPerSecond: 0, connections: 0 });
    nft.add(`r_${A}_80_tcp`, 4);
    nft.add(`r_${B}_80_tcp`, 6);
    now = 3000;
    await meter.sample();
    const report = meter.report(2000);
    assert.equal(report.version, TRAFFIC_VERSION);
    assert.equal(report.node, 'n1');
    assert.equal(report.unixMs, 3000);
    const byId = new Map(report.endpoints.map((e) => [e.containerId, e]));
    assert.deepEqual(byId.get(A), { workload: 'web', containerId: A, address: '10.244.1.2', requestsPerSecond: 7, connectionsPerSecond: 0, openConnections: 0 });
    assert.equal(byId.get(B)?.requestsPerSecond, 6);
    // Someone flushed the counters behind the meter's back: a new baseline, not a negative rate.
    nft.counters.set(`r_${A}_80_tcp`, 0);
    now = 4000;
    await meter.sample();
    assert.equal(meter.traffic(A)?.requestsPerSecond, 0);
    // Reading fails for longer than 5 s: the old figures are not repeated.
    nft.add(`r_${B}_80_tcp`, 5);
    now = 4500;
    await meter.sample();
    assert.equal(meter.traffic(B)?.requestsPerSecond, 10, "5 more over the last half second");
    const failing = nft.nftListTable;
    nft.nftListTable = async () => {
      throw new Error('nft is gone');
    };
    now = 10_000;
    await assert.rejects(meter.sample(), /nft is gone/);
    assert.deepEqual(meter.traffic(B), { requestsPerSecond: 0, connections: 0 });
    assert.deepEqual(meter.report().endpoints, []);
    nft.nftListTable = failing;
    // A gone replica has no figures.
    list = [replica(B, '10.244.1.3')];
    now = 11_000;
    await meter.sample();
    assert.equal(meter.traffic(A), undefined);
    assert.deepEqual(meter.report().endpoints.map((e) => e.containerId), [B]);
    // No local endpoints: nothing is read.
    list = [];
    nft.nftListTable = async () => assert.fail('counters read without endpoints');
    now = 12_000;
    await meter.sample();
    assert.deepEqual(meter.report().endpoints, []);
  });

  it('feeds the metrics sampler (autoscaler) with each replica\'s request rate and open connections', async () => {
    const nft = new MemoryNft();
    let now = 0;
    const list = [replica(A, '10.244.1.2')];
    const open: ConntrackEntry = { protocol: 'tcp', state: 'ESTABLISHED', original: { src: '10.244.3.3', dst: '10.96.0.1', sport: 40000, dport: 80 }, reply: { src: '10.244.1.2', dst: '10.244.3.3', sport: 80, dport: 40000 } };
    const meter = new TrafficMeter({ node: 'n1', ops: nft, conntrack: { entries: async () => [open] }, containers: { list: () => list }, logger: silentLogger(), now: () => now });
    await meter.sample();
    nft.add(`r_${A}_80_tcp`, 7);
    now = 1000;
    await meter.sample();
    const sampler = new MetricsSampler({
      node: 'n1', logger: silentLogger(), traffic: meter, sink: { publishMetrics: () => true },
      source: { list: () => list, stats: async (ids) => ids.map((id) => ({ ...ContainerStats.fromJSON({}), id, readUnixMs: 1000 })) },
    });
    const m = await sampler.sample();
    assert.deepEqual(m.replicas.map((r) => [r.containerId, r.requestsPerSecond, r.connections]), [[A, 7, 1]]);
  });

  it('fails loudly and installs again when counters are missing on read-back', async () => {
    const nft = new MemoryNft();
    const meter = new TrafficMeter({ node: 'n1', ops: nft, conntrack: { entries: async () => [] }, containers: { list: () => [replica(A, '10.244.1.2')] }, logger: silentLogger() });
    await meter.sample();
    nft.counters.delete(`c_${A}_80_tcp`);
    await assert.rejects(meter.sample(), (err: unknown) => err instanceof TrafficTableError && /counters \["c_a{64}_80_tcp"\] are missing/.test(err.message));
    await meter.sample();
    assert.equal(nft.applied.length, 2, 'installed again');
  });
});

describe('TrafficMeter (real nft and conntrack in a namespace host)', function () {
  this.timeout(90_000);
  const RANGE = '10.244.250.0/24';
  const SERVER = '10.244.250.2';
  let hosts: TestHosts | undefined;
  let made: string[] = [];
  let procs: ChildProcess[] = [];
  let dir = '';

  afterEach(async () => {
    for (const p of procs) {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    procs = [];
    for (const n of made) await tryRun('ip', ['netns', 'delete', n]).catch(() => undefined);
    made = [];
    await hosts?.cleanup();
    hosts = undefined;
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  /** A netns `name` routed through the node netns over a veth /30 (node side .1 / .5, this side .2 / .6). */
  async function attach(node: string, name: string, nodeSide: string, side: string, link: string): Promise<void> {
    await run('ip', ['netns', 'add', name]);
    made.push(name);
    await run('ip', ['-n', node, 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
    await run('ip', ['-n', node, 'addr', 'add', `${nodeSide}/30`, 'dev', link]);
    await run('ip', ['-n', node, 'link', 'set', link, 'up']);
    await run('ip', ['-n', name, 'addr', 'add', `${side}/30`, 'dev', 'eth0']);
    await run('ip', ['-n', name, 'link', 'set', 'eth0', 'up']);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', name, 'route', 'add', RANGE, 'via', nodeSide]);
  }

  it('counts requests, new connections and open connections of an endpoint reached through and from the node', async () => {
    hosts = await makeHosts(1, { guardRanges: [RANGE] });
    const node = hosts.hosts[0]!.netns;
    const tag = hosts.runId.slice(-6);
    const server = `trf-s-${tag}`;
    const client = `trf-c-${tag}`;
    await run('ip', ['netns', 'exec', node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await attach(node, server, '10.244.250.1', SERVER, 'trs0');
    await attach(node, client, '10.244.250.5', '10.244.250.6', 'trc0');
    dir = mkdtempSync(join(tmpdir(), 'berth-test-traffic-'));
    writeFileSync(join(dir, 'index.html'), 'hello\n');
    const httpd = spawn('ip', ['netns', 'exec', server, 'busybox', 'httpd', '-f', '-p', '80', '-h', dir], { stdio: 'ignore' });
    procs.push(httpd);

    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${node}` });
    let now = 0;
    const meter = new TrafficMeter({
      node: 'n1', ops, conntrack: new ProcConntrackReader({ nodeNetns: `/run/netns/${node}` }), containers: { list: () => [replica(A, SERVER)] }, logger: silentLogger(), now: () => now,
    });
    await meter.sample();
    const listed = await tryRunIn(node, 'nft', ['list', 'table', 'ip', TRAFFIC_NFT_TABLE]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`ip daddr ${SERVER} tcp dport 80 ct state new counter name "c_${A}_80_tcp"`));

    await waitFor('httpd to answer', async () => (await tryRunIn(client, 'timeout', ['5', 'busybox', 'wget', '-q', '-O-', `http://${SERVER}/`])).stdout === 'hello\n', 20_000, 200);
    await meter.sample();
    // Five requests through the node (forward hook), one second apart on the meter's clock.
    for (let i = 0; i < 5; i++) {
      const r = await tryRunIn(client, 'timeout', ['5', 'busybox', 'wget', '-q', '-O-', `http://${SERVER}/`]);
      assert.equal(r.stdout, 'hello\n', r.stderr);
    }
    now = 1000;
    await meter.sample();
    let t = meter.report(1000).endpoints[0]!;
    assert.ok(t.requestsPerSecond >= 5, `requests/s ${t.requestsPerSecond}`);
    assert.ok(t.connectionsPerSecond >= 5, `connections/s ${t.connectionsPerSecond}`);
    assert.equal(meter.traffic(A)?.requestsPerSecond, t.requestsPerSecond);

    // Three from the node itself (output hook).
    for (let i = 0; i < 3; i++) assert.equal((await tryRunIn(node, 'timeout', ['5', 'busybox', 'wget', '-q', '-O-', `http://${SERVER}/`])).stdout, 'hello\n');
    now = 2000;
    await meter.sample();
    t = meter.report(1000).endpoints[0]!;
    assert.ok(t.requestsPerSecond >= 3, `requests/s from the node ${t.requestsPerSecond}`);
    assert.ok(t.connectionsPerSecond >= 3, `connections/s from the node ${t.connectionsPerSecond}`);

    // Nothing happens: the rates fall to 0.
    now = 3000;
    await meter.sample();
    t = meter.report(1000).endpoints[0]!;
    assert.deepEqual([t.requestsPerSecond, t.connectionsPerSecond], [0, 0]);

    // A connection held open (nc with its stdin open, httpd waiting for the request) shows as open.
    const nc = spawn('ip', ['netns', 'exec', client, 'busybox', 'nc', SERVER, '80'], { stdio: ['pipe', 'ignore', 'ignore'] });
    procs.push(nc);
    await waitFor('the held connection to show as open', async () => {
      await meter.sample();
      return meter.traffic(A)?.connections === 1;
    }, 20_000, 200);
    assert.equal(meter.report().endpoints[0]!.openConnections, 1);
    nc.kill('SIGKILL');
    await waitFor('the closed connection to leave the open count', async () => {
      await meter.sample();
      return meter.traffic(A)?.connections === 0;
    }, 20_000, 200);

    await meter.clear();
    assert.notEqual((await tryRunIn(node, 'nft', ['list', 'table', 'ip', TRAFFIC_NFT_TABLE])).code, 0, 'the table is gone');
  });
});
