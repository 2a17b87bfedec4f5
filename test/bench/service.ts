/**
 * Request throughput through a service address (issue 7): the same client
 * (`wrk`, fixed threads and connections) against one replica straight at its
 * container address and through the service's virtual IP, alternating, for
 * several rounds; prints requests/s (small page) and bytes/s (large file)
 * and the ratio VIP / direct (target >= 0.9).
 *
 * Setup, all real parts: one namespace host is the node (no default route;
 * the egress guard covers the cluster and service ranges before any address
 * exists). agent/network's NodeNetwork gives two containers their cluster
 * network there (netns + CNI loopback + bridge with host-local): the server,
 * a busybox `httpd` container started through the runtime, and the client's
 * netns, in which `wrk` runs (`nsenter --net`). agent/network's ServiceSync
 * installs the node's real service table (`ip berth_svc`: DNAT of
 * VIP:80 with numgen over the ready endpoints, hairpin masquerade) from a
 * ServiceService.List answer built here (the controller's part is left out:
 * it only decides which endpoints the table gets). The client and the server
 * sit on the same node bridge, so the VIP path is the node's worst case:
 * routed through the node, DNATed, and masqueraded back onto the bridge
 * (the direct path is plain bridging).
 *
 * With `--cross-node` a second namespace host is the client's node: it gets
 * its own bridge, service table and host-gw routes between the two nodes'
 * subnets (what RouteSync installs), and `wrk` runs in a container netns on
 * that node (a node's own processes reach VIPs only with a route covering
 * the service range, which the namespace hosts do not have).
 *
 * Needs `wrk` (apt-get install -y wrk). Everything is removed in `finally`,
 * also after a failure or Ctrl-C.
 *
 * With `--server node` the replica is a small Node.js HTTP server with
 * keep-alive instead (run with `nsenter --net` in the replica's network
 * namespace, the same page and file): busybox httpd serves one request per
 * connection, so its figures are bound by a fork and a new connection (and
 * conntrack entry) per request; keep-alive shows the per-packet cost of the
 * DNAT path instead.
 *
 * The client side, the same for both paths (issue 7's cross-node stalls,
 * found with --diagnose; docs/benchmarks.md has the counters):
 * - Each path has its own client container on the client's node, set up
 *   the same way (`--shared-client`: one for both, the old set-up). Across
 *   nodes neither path is source-NATed, so a direct connection and a VIP
 *   connection from one client address and port arrive at the replica as
 *   the same 4-tuple. busybox httpd closes first and keeps each one in
 *   TIME_WAIT for 60 s; the client chose the other path's initial sequence
 *   number and timestamp offset for another destination (the VIP or the
 *   replica's address), so the replica's TIME_WAIT rejects the new SYN
 *   (PAWS, TcpExtPAWSTimewait), the client resets and retransmits the SYN
 *   1 s later. The more of the other path's connections in TIME_WAIT, the
 *   more 1 s stalls, on both paths. On one node the VIP path is masqueraded
 *   (hairpin), so the two never met there.
 * - The clients reuse their own TIME_WAIT ports (`net.ipv4.tcp_tw_reuse=1`
 *   in the client netns; `--tw-reuse 2` is Linux's default, loopback only):
 *   wrk opens thousands of connections a second to one address, the client
 *   holds TIME_WAIT for a good part of them, and connect() looks through
 *   the even half of net.ipv4.ip_local_port_range first (14116 ports here);
 *   once those are all in TIME_WAIT every connect() walks them in the kernel
 *   (`__inet_hash_connect`: system CPU 90%) and the rate falls about 7x, on
 *   whichever path got there first. Reuse needs a newer TCP timestamp, so it
 *   is safe, and it changes how a client picks its ports, not the path.
 *
 * Usage (root): node .build-x/test/bench/service.js [--rounds N] [--seconds S] [--connections C] [--cross-node] [--server httpd|node] [--shared-client] [--tw-reuse 0|1|2] [--diagnose]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHosts, type TestHosts } from '../harness/index.js';
import { RuntimeFixture } from '../agent/runtime/busybox.js';
import { NodeNetwork, ServiceSync } from '../../agent/network/index.js';
import { LinuxNetOps } from '../../agent/sys/index.js';
import { silentLogger } from '../../lib/index.js';
import { ListServicesResponse } from '../../proto/gen/berth/v1/services.js';
import { ContainerSpec } from '../../proto/gen/berth/v1/types.js';
import { intArg } from './args.js';
import { describeDelta, snapshot, wrkLatencyMaxMs, wrkSocketErrors, type Place } from './service-diag.js';
import { median, quantile } from './stats.js';

const CLUSTER = '10.244.0.0/16';
const SERVICES = '10.96.0.0/16';
const SUBNET = '10.244.252.0/24';
const CLIENT_SUBNET = '10.244.253.0/24';
const VIP = '10.96.252.10';
const BIG_BYTES = 1 << 20;
const PAGE = '<html><body>berth service bench</body></html>\n';
/** The keep-alive server of --server node: argv[1] is the page, argv[2] the large file's size. */
const NODE_SERVER = `
const http = require('node:http');
const page = Buffer.from(process.argv[1]);
const big = Buffer.alloc(Number(process.argv[2]), 0x61);
http.createServer((req, res) => {
  const body = req.url === '/index.html' ? page : req.url === '/big.bin' ? big : undefined;
  if (!body) { res.writeHead(404, { 'content-length': 0 }); res.end(); return; }
  res.writeHead(200, { 'content-length': body.length });
  res.end(body);
}).listen(80, '0.0.0.0');
`;

interface Out { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<Out> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

async function must(cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} ${r.code === null ? 'was killed (timed out)' : `exited ${r.code}`}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, K: 1e3, M: 1e6, G: 1e9, B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/** requests/s, bytes/s and failed requests from wrk's report; throws when a figure is missing. */
export function parseWrk(text: string): { rps: number; bytesPerSec: number; requests: number; errors: number } {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const tps = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(text);
  const total = /(\d+) requests in/.exec(text);
  if (!rps || !tps || !total) throw new Error(`failed to read wrk's report: expected "Requests/sec", "Transfer/sec" and "N requests in", got:\n${text}`);
  let errors = 0;
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (sock) errors += Number(sock[1]) + Number(sock[3]) + Number(sock[4]);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (non2xx) errors += Number(non2xx[1]);
  return { rps: Number(rps[1]), bytesPerSec: Number(tps[1]) * (UNITS[tps[2] ?? 'B'] ?? 1), requests: Number(total[1]), errors };
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`${sig}: stopping after the current step and cleaning up (again to quit at once)\n`);
  });
}

async function main(): Promise<void> {
  const rounds = intArg('rounds', 5);
  const seconds = intArg('seconds', 5);
  const connections = intArg('connections', 16);
  const crossNode = process.argv.includes('--cross-node');
  const diagnose = process.argv.includes('--diagnose');
  const sharedClient = process.argv.includes('--shared-client');
  const ti = process.argv.indexOf('--tw-reuse');
  const twReuse = ti < 0 ? '1' : process.argv[ti + 1] ?? '';
  if (!['0', '1', '2'].includes(twReuse)) {
    process.stderr.write(`--tw-reuse: expected 0, 1 or 2 (net.ipv4.tcp_tw_reuse in the client netns), got ${JSON.stringify(twReuse)}\n`);
    process.exit(2);
  }
  const si = process.argv.indexOf('--server');
  const serverKind = si < 0 ? 'httpd' : process.argv[si + 1] ?? '';
  if (serverKind !== 'httpd' && serverKind !== 'node') {
    process.stderr.write(`--server: expected "httpd" or "node", got ${JSON.stringify(serverKind)}\n`);
    process.exit(2);
  }
  if ((await run('sh', ['-c', 'command -v wrk && command -v nsenter'])).code !== 0) {
    throw new Error('wrk and nsenter are needed: apt-get install -y wrk');
  }
  const loadStart = loadavg();
  let hosts: TestHosts | undefined;
  let fx: RuntimeFixture | undefined;
  let nodeServer: ChildProcess | undefined;
  const nets: NodeNetwork[] = [];
  const syncs: ServiceSync[] = [];
  const dirs: string[] = [];
  const problems: string[] = [];
  try {
    hosts = await makeHosts(crossNode ? 2 : 1, { guardRanges: [CLUSTER, SERVICES] });
    const node = hosts.hosts[0]!;
    const dir = await mkdtemp(join(tmpdir(), 'berth-bench-svc-'));
    dirs.push(dir);
    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${node.netns}` });
    const net = new NodeNetwork({ ops, logger: silentLogger(), stateDir: join(dir, 'net'), subnet: SUBNET, clusterCidr: CLUSTER });
    nets.push(net);
    await net.start();
    fx = await new RuntimeFixture().setup();
    const spec = ContainerSpec.fromJSON({ image: 'busybox' });

    // The server replica: busybox httpd in a container with its cluster address.
    const srvId = `svcbench${Date.now().toString(36)}srv`;
    const srv = await net.setup(srvId, spec);
    const bundle = await fx.bundle(['httpd', '-f', '-p', '80', '-h', '/www'], { netnsPath: srv.netnsPath }, async (rootfs) => {
      await mkdir(join(rootfs, 'www'));
      await writeFile(join(rootfs, 'www', 'index.html'), PAGE);
      await writeFile(join(rootfs, 'www', 'big.bin'), Buffer.alloc(BIG_BYTES, 0x61));
    });
    if (serverKind === 'httpd') {
      await fx.runtime.create(srvId, bundle, { start: true });
    } else {
      nodeServer = spawn('nsenter', [`--net=${srv.netnsPath}`, process.execPath, '-e', NODE_SERVER, PAGE, String(BIG_BYTES)], { stdio: ['ignore', 'ignore', 'inherit'] });
    }

    // The service table of the server's node: VIP:80 -> the one ready endpoint.
    const list = ListServicesResponse.fromJSON({
      serviceCidr: SERVICES,
      services: [{
        name: 'web', virtualIp: VIP,
        ports: [{ name: 'http', port: 80, protocol: 'tcp', targetPort: 80 }],
        endpoints: [{ containerId: srvId, containerName: 'web-0', node: 'node-0', address: srv.ipAddress, ready: true, state: 'running' }],
      }],
    });
    const sync = new ServiceSync({ ops, logger: silentLogger(), bridge: net.bridge });
    syncs.push(sync);
    await sync.apply(list);

    // The clients: container netns on the same bridge, or (--cross-node) on a second node's bridge.
    // One per path (the same set-up twice), unless --shared-client: see the header.
    let clientNode: NodeNetwork;
    let where: string;
    if (crossNode) {
      const other = hosts.hosts[1]!;
      const ops2 = new LinuxNetOps({ nodeNetns: `/run/netns/${other.netns}` });
      // The client node's own bridge and table (as its agent would have), and the host-gw route to the server's subnet.
      const dir2 = await mkdtemp(join(tmpdir(), 'berth-bench-svc-'));
      dirs.push(dir2);
      const net2 = new NodeNetwork({ ops: ops2, logger: silentLogger(), stateDir: join(dir2, 'net'), subnet: CLIENT_SUBNET, clusterCidr: CLUSTER });
      nets.push(net2);
      await net2.start();
      await ops2.replaceRoute(SUBNET, node.address);
      await ops.replaceRoute(CLIENT_SUBNET, other.address);
      const sync2 = new ServiceSync({ ops: ops2, logger: silentLogger(), bridge: net2.bridge });
      syncs.push(sync2);
      await sync2.apply(list);
      clientNode = net2;
      where = 'client: wrk in a container netns on another node (both paths routed node to node by host-gw routes; the VIP DNATed in the client node\'s prerouting chain)';
    } else {
      clientNode = net;
      where = 'client: wrk in a container netns on the server\'s node bridge (VIP: routed via the node, DNAT, hairpin masquerade; direct: bridged)';
    }
    const cliDirect = await clientNode.setup(`svcbench${Date.now().toString(36)}cli`, spec);
    const cliVip = sharedClient ? cliDirect : await clientNode.setup(`svcbench${Date.now().toString(36)}cliv`, spec);
    const clientOf = { direct: cliDirect.netnsPath, vip: cliVip.netnsPath };
    // The clients' TIME_WAIT reuse (per netns; Linux's default 2 = loopback only), the same on both.
    for (const path of new Set([cliDirect.netnsPath, cliVip.netnsPath])) await must('nsenter', [`--net=${path}`, 'sysctl', '-q', '-w', `net.ipv4.tcp_tw_reuse=${twReuse}`]);
    where += sharedClient
      ? `; one client netns (${cliDirect.ipAddress}) for both paths (--shared-client)`
      : `; one client netns per path, the same set-up (direct from ${cliDirect.ipAddress}, VIP from ${cliVip.ipAddress})`;

    // Both paths answer with the page before anything is measured (httpd may take a moment to listen).
    const direct = `http://${srv.ipAddress}:80`;
    const viaVip = `http://${VIP}:80`;
    for (const [which, base] of [['direct', direct], ['vip', viaVip]] as const) {
      let body = '';
      for (let i = 0; i < 150 && body !== PAGE && !interrupted; i++) {
        const r = await run('nsenter', [`--net=${clientOf[which]}`, 'timeout', '5', 'busybox', 'wget', '-q', '-O', '-', `${base}/index.html`]);
        body = r.code === 0 ? r.stdout : '';
        if (body !== PAGE) await new Promise((res) => setTimeout(res, 100));
      }
      if (body !== PAGE) throw new Error(`failed to fetch ${base}/index.html from the client: expected the bench page, got ${JSON.stringify(body.slice(0, 200))}`);
    }

    const places: Place[] = [
      ...(sharedClient ? [{ name: 'client', netnsPath: cliDirect.netnsPath }] : [{ name: 'direct client', netnsPath: cliDirect.netnsPath }, { name: 'VIP client', netnsPath: cliVip.netnsPath }]),
      ...(crossNode ? [{ name: 'client node', netnsPath: `/run/netns/${hosts.hosts[1]!.netns}` }] : []),
      { name: 'server node', netnsPath: `/run/netns/${node.netns}` },
      { name: 'server', netnsPath: srv.netnsPath },
      { name: 'root', netnsPath: '' },
    ];
    const wrk = async (which: 'direct' | 'vip', url: string): Promise<ReturnType<typeof parseWrk>> => {
      const before = diagnose ? await snapshot(places) : undefined;
      const text = await must('nsenter', [`--net=${clientOf[which]}`, 'wrk', '-t', '2', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s', url], (seconds + 60) * 1000);
      const r = parseWrk(text);
      if (before) {
        const after = await snapshot(places);
        process.stderr.write(`${url}: ${r.rps.toFixed(0)} req/s, latency max ${wrkLatencyMaxMs(text).toFixed(0)} ms ${wrkSocketErrors(text)} (load ${loadavg()})\n${describeDelta(places, before, after).join('\n')}\n`);
      }
      if (r.errors > r.requests * 0.01) throw new Error(`wrk ${url}: ${r.errors} failed of ${r.requests} requests (more than 1%):\n${text}`);
      return r;
    };
    const res = { small: { direct: [] as number[], vip: [] as number[] }, big: { direct: [] as number[], vip: [] as number[] } };
    const loads: string[] = [];
    // Warm-up (ARP, conntrack, page cache), not counted.
    await wrk('direct', `${direct}/index.html`);
    await wrk('vip', `${viaVip}/index.html`);
    for (let r = 0; r < rounds; r++) {
      if (interrupted) throw new Error('interrupted');
      // ABBA order per round so neither path always goes first.
      const order: ('direct' | 'vip')[] = r % 2 === 0 ? ['direct', 'vip'] : ['vip', 'direct'];
      for (const which of order) {
        const base = which === 'direct' ? direct : viaVip;
        res.small[which].push((await wrk(which, `${base}/index.html`)).rps);
        res.big[which].push((await wrk(which, `${base}/big.bin`)).bytesPerSec);
      }
      loads.push(loadavg());
    }

    const ratios = (a: number[], b: number[]) => a.map((x, i) => x / (b[i] ?? NaN));
    const out = process.stdout;
    out.write(`${where}\nwrk -t 2 -c ${connections} -d ${seconds}s, ${rounds} rounds (after one warm-up each), alternating; server: ${serverKind === 'httpd' ? 'busybox httpd in a container (one request per connection)' : 'Node.js http with keep-alive in the replica\'s netns'}\n`);
    out.write(`load average: start ${loadStart}; after each round ${loads.join(' / ')}\n\n`);
    out.write('| what | direct (median) | via VIP (median) | VIP / direct (median of per-round ratios) | range of per-round ratios |\n| --- | --- | --- | --- | --- |\n');
    const line = (name: string, d: number[], v: number[], fmt: (x: number) => string) => {
      const rr = ratios(v, d);
      out.write(`| ${name} | ${fmt(median(d))} | ${fmt(median(v))} | ${median(rr).toFixed(2)} | ${quantile(rr, 0).toFixed(2)}-${quantile(rr, 1).toFixed(2)} |\n`);
    };
    line(`requests/s, ${PAGE.length} B page`, res.small.direct, res.small.vip, (x) => x.toFixed(0));
    line(`MB/s, ${BIG_BYTES >> 20} MiB file`, res.big.direct, res.big.vip, (x) => (x / 1e6).toFixed(0));
    out.write(`\nVIP / direct (requests/s, median of rounds): ${median(ratios(res.small.vip, res.small.direct)).toFixed(2)} (target >= 0.9)\n`);
  } finally {
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    if (nodeServer?.pid !== undefined && nodeServer.exitCode === null) {
      const p = nodeServer;
      await attempt('node server', () => new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill('SIGKILL');
      }));
    }
    if (fx) await attempt('containers', () => fx!.cleanup());
    for (const s of syncs) await attempt('service table', () => s.clear());
    for (const n of nets) await attempt('node network', () => n.cleanup());
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    if (hosts) await attempt('namespace hosts', () => hosts!.cleanup());
    if (problems.length > 0) process.stderr.write(`cleanup problems:\n  ${problems.join('\n  ')}\n`);
  }
  if (problems.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
