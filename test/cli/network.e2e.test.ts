/**
 * Container networks end to end: a real controller, etcd, NATS, registry and
 * three `berth agent --network cni` processes, each with its node network
 * (bridge, routes, nft table) inside its own namespace host from the hosts
 * harness (`--node-netns`), real busybox containers started with `berth run`.
 * The hosts have no default route and the egress guard covers the cluster
 * range before any address exists; all traffic goes between namespaces the
 * test made.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { makeHosts, startRegistryWithImages, tailLog, tryRunIn, waitFor, type ManagedProcess, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';

const CLUSTER = '10.244.0.0/16';

interface ContainerJson {
  id: string;
  name: string;
  node?: string;
  status?: { state?: string; ipAddress?: string };
}

interface NodeJson {
  spec?: { name?: string };
  network?: { subnet?: string };
}

function inSubnet(ip: string, subnet: string): boolean {
  const prefix = subnet.split('.').slice(0, 3).join('.');
  return subnet.endsWith('.0/24') && ip.startsWith(`${prefix}.`);
}

describe('container networks end to end (controller, three agents in namespace hosts, real containers)', function () {
  this.timeout(300_000);
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let image = '';
  const agents: ManagedProcess[] = [];
  const subnets = new Map<string, string>();

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    hosts = await makeHosts(3, { guardRanges: [CLUSTER] });
    cluster = await startCluster();
    for (const [i, h] of hosts.hosts.entries()) {
      agents.push(cluster.startAgent(`node-${i}`, ['--network', 'cni', '--node-netns', `/run/netns/${h.netns}`, '--internal-ip', h.address, '--cleanup']));
    }
    const c = cluster;
    let last = '';
    await waitFor('three Ready nodes with subnets', async () => {
      for (const a of agents) if (a.exited()) throw new Error(`agent exited early:\n${tailLog(a)}`);
      const r = await c.cli(['get', 'nodes', '-o', 'json']);
      last = r.stdout + r.stderr;
      if (r.code !== 0 || (r.stdout.match(/NODE_STATE_READY/g) ?? []).length < 3) return false;
      const nodes = JSON.parse(r.stdout) as NodeJson[];
      for (const n of nodes) if (n.spec?.name && n.network?.subnet) subnets.set(n.spec.name, n.network.subnet);
      return subnets.size === 3;
    }, 60_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\nlast get nodes: ${last.slice(0, 2000)}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`);
    });
  });

  after(async () => {
    const problems: string[] = [];
    await cluster?.stop().catch((e: Error) => problems.push(e.message));
    await hosts?.cleanup().catch((e: Error) => problems.push(e.message));
    await reg?.stop().catch((e: Error) => problems.push(e.message));
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  }

  async function ps(): Promise<ContainerJson[]> {
    const r = await cli(['ps', '-a', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ContainerJson[];
  }

  async function runDetached(args: string[]): Promise<ContainerJson> {
    const r = await cli(['run', '-d', ...args]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim();
    const c = (await ps()).find((x) => x.id === id || x.id.startsWith(id));
    assert.ok(c, `container ${id} is listed`);
    return c;
  }

  /** A busybox wget loop (bounded by timeout; Debian's busybox wget crashes with -T). */
  function fetch(url: string, wget = 'wget'): string {
    return `for i in $(seq 1 50); do if timeout 5 ${wget} -q -O - ${url}; then exit 0; fi; sleep 0.2; done; echo "no answer from ${url}"; exit 1`;
  }

  it('gives every node a /24 of the cluster range and every container an address from its node subnet', async () => {
    assert.deepEqual([...subnets.keys()].sort(), ['node-0', 'node-1', 'node-2']);
    assert.equal(new Set(subnets.values()).size, 3);
    for (const s of subnets.values()) assert.match(s, /^10\.244\.\d+\.0\/24$/);
    const web = await runDetached(['--node', 'node-2', '--name', 'web-2', image, 'httpd', '-f', '-v', '-p', '80', '-h', '/etc']);
    const ip = web.status?.ipAddress ?? '';
    assert.ok(inSubnet(ip, subnets.get('node-2') ?? ''), `address "${ip}" is in node-2's subnet ${subnets.get('node-2')}`);
    const wide = await cli(['get', 'replicas', '-o', 'wide', '-a']);
    if (wide.code === 0) assert.match(wide.stdout + (await cli(['ps', '-a'])).stdout, new RegExp(ip.replace(/\./g, '\\.')));
    const inspect = await cli(['inspect', 'web-2']);
    if (inspect.code === 0) assert.match(inspect.stdout, new RegExp(ip.replace(/\./g, '\\.')));
    // Routes to the two other nodes' subnets, through their addresses, in node-0's namespace.
    const h0 = hosts!.hosts[0]!;
    await waitFor('node-0 routes to both other subnets', async () => {
      const r = await tryRunIn(h0.netns, 'ip', ['-4', 'route', 'show', 'proto', '198']);
      return r.stdout.includes(subnets.get('node-1')!) && r.stdout.includes(subnets.get('node-2')!);
    }, 20_000, 250);
  });

  it('lets a container on node-0 fetch from a container on node-2 by address, and the server sees its real address', async () => {
    const web = (await ps()).find((c) => c.name === 'web-2');
    assert.ok(web, 'web-2 runs');
    const ip = web.status?.ipAddress ?? '';
    const r = await cli(['run', '--rm', '--node', 'node-0', '--name', 'client-0', image, 'sh', '-c', `ip -4 -o addr show eth0; ${fetch(`http://${ip}/hostname`)}`]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /web-2/);
    const clientIp = /inet (10\.244\.\d+\.\d+)\//.exec(r.stdout)?.[1] ?? '';
    assert.ok(inSubnet(clientIp, subnets.get('node-0') ?? ''), `client address "${clientIp}" from node-0's subnet`);
    // httpd -v logs each client's address: node-2 saw node-0's container address, not a NAT address.
    await waitFor('the server to log the client address', async () => {
      const logs = await cli(['logs', 'web-2']);
      return logs.stdout.includes(clientIp) || logs.stderr.includes(clientIp);
    }, 20_000, 250);
  });

  it('lets two containers on one node reach each other', async () => {
    const web = await runDetached(['--node', 'node-1', '--name', 'web-1', image, 'httpd', '-f', '-p', '80', '-h', '/etc']);
    const r = await cli(['run', '--rm', '--node', 'node-1', image, 'sh', '-c', fetch(`http://${web.status?.ipAddress}/hostname`)]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /web-1/);
  });

  it('answers a published port on the node address and refuses the same host port twice on one node', async () => {
    const pub = await runDetached(['--node', 'node-1', '--name', 'pub-1', '-p', '18080:80', image, 'httpd', '-f', '-p', '80', '-h', '/etc']);
    const table = await cli(['ps']);
    const row = table.stdout.split('\n').find((l) => l.includes('pub-1')) ?? '';
    assert.match(row, new RegExp(`18080->80/tcp\\s+pub-1\\s+node-1\\s+${(pub.status?.ipAddress ?? 'none').replace(/\./g, '\\.')}$`));
    const h0 = hosts!.hosts[0]!;
    const h1 = hosts!.hosts[1]!;
    const r = await tryRunIn(h0.netns, 'sh', ['-c', fetch(`http://${h1.address}:18080/hostname`, 'busybox wget')], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /pub-1/);
    const again = await cli(['run', '-d', '--node', 'node-1', '-p', '18080:80', image, 'httpd', '-f', '-p', '80']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /18080\/tcp is already published on this node/);
    const bad = await cli(['run', '-d', '-p', '99999:80', image, 'true']);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /-p, --publish: the host port must be a whole number from 1 to 65535, got "99999"/);
    const badNet = await cli(['run', '-d', '--network', 'bridge', image, 'true']);
    assert.notEqual(badNet.code, 0);
    assert.match(badNet.stderr, /--network: expected one of "cluster", "host", "none", got "bridge"/);
  });

  it('gives lo only with --network none and the node network with --network host', async () => {
    const none = await cli(['run', '--rm', '--node', 'node-0', '--network', 'none', image, 'ip', '-o', 'link']);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /lo: <LOOPBACK,UP/);
    assert.doesNotMatch(none.stdout, /eth0@/);
    const host = await cli(['run', '--rm', '--node', 'node-0', '--network', 'host', image, 'ip', '-4', '-o', 'addr']);
    assert.equal(host.code, 0, host.stderr);
    assert.match(host.stdout, new RegExp(hosts!.hosts[0]!.address.replace(/\./g, '\\.')));
  });

  it('deletes the container namespace when the container is removed', async () => {
    const c = await runDetached(['--node', 'node-0', '--name', 'gone', image, 'sleep', '600']);
    const ns = `/run/netns/berth-${c.id.slice(0, 40)}`;
    assert.ok(existsSync(ns), `${ns} exists while the container runs`);
    const r = await cli(['rm', '-f', 'gone']);
    assert.equal(r.code, 0, r.stderr);
    await waitFor('the namespace to be deleted', () => !existsSync(ns), 20_000, 200);
  });

  it('drops a removed node\'s route on the other nodes and releases its subnet', async () => {
    const refused = await cli(['node', 'rm', 'node-1']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /failed to remove node "node-1": it is Ready/);
    await agents[2]!.stop();
    await waitFor('node-2 to be NotReady', async () => {
      const r = await cli(['get', 'nodes', '-o', 'json']);
      const n = (JSON.parse(r.stdout) as (NodeJson & { status?: { state?: string } })[]).find((x) => x.spec?.name === 'node-2');
      return n?.status?.state === 'NODE_STATE_NOT_READY';
    }, 30_000, 500);
    const rm = await cli(['node', 'rm', 'node-2']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, new RegExp(`node/node-2 removed \\(subnet ${subnets.get('node-2')!.replace(/\./g, '\\.').replace('/', '\\/')} released\\)`));
    const h0 = hosts!.hosts[0]!;
    await waitFor('node-0 to drop the route to node-2', async () => {
      const r = await tryRunIn(h0.netns, 'ip', ['-4', 'route', 'show', 'proto', '198']);
      return !r.stdout.includes(subnets.get('node-2')!) && r.stdout.includes(subnets.get('node-1')!);
    }, 20_000, 250);
  });
});
