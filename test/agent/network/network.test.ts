/**
 * agent/network against the real kernel: the CNI plugins from
 * /usr/lib/cni, nft and ip, with real containers (busybox, through the
 * runtime) joining the namespaces the network makes. Every "node" is a
 * namespace host from the hosts harness (no default route, egress guard
 * covering 10.244.0.0/16 installed before any address exists), so the
 * bridge, routes and nft table of each node live inside that host and all
 * traffic stays between namespaces the test made.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHosts, tryRunIn, type TestHost, type TestHosts } from '../../harness/index.js';
import { RuntimeFixture } from '../runtime/busybox.js';
import { NodeNetwork, RouteSync, NFT_FAMILY, NFT_TABLE, PortInUseError } from '../../../agent/network/index.js';
import { LinuxNetOps } from '../../../agent/sys/index.js';
import { silentLogger, InvalidArgumentError, parseCidr, cidrContains, parseIpv4 } from '../../../lib/index.js';
import { ContainerSpec, Node } from '../../../proto/gen/berth/v1/types.js';

const CLUSTER = '10.244.0.0/16';

interface TestNode {
  host: TestHost;
  ops: LinuxNetOps;
  net: NodeNetwork;
  subnet: string;
  dir: string;
}

function spec(extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return { ...ContainerSpec.fromJSON({ image: 'busybox' }), ...extra };
}

/** A busybox httpd serving /www with a CGI that prints the client's address. */
async function webRoot(rootfs: string): Promise<void> {
  await mkdir(join(rootfs, 'www', 'cgi-bin'), { recursive: true });
  await writeFile(join(rootfs, 'www', 'index.html'), 'hello from berth\n');
  await writeFile(join(rootfs, 'www', 'cgi-bin', 'addr'), '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "peer=$REMOTE_ADDR"\n');
  await chmod(join(rootfs, 'www', 'cgi-bin', 'addr'), 0o755);
}

/** A shell loop fetching `url` until it answers (busybox wget, bounded by timeout, no -T). */
function fetchCmd(url: string, wget = 'wget'): string[] {
  return ['sh', '-c', `for i in $(seq 1 50); do if timeout 5 ${wget} -q -O - ${url}; then exit 0; fi; sleep 0.2; done; echo "no answer from ${url}"; exit 1`];
}

/** busybox httpd shows an IPv4 peer as "[::ffff:a.b.c.d]". */
function peerPattern(address: string): RegExp {
  return new RegExp(`peer=(\\[::ffff:)?${address.replace(/\./g, '\\.')}\\]?$`, 'm');
}

describe('NodeNetwork', function () {
  this.timeout(180_000);
  let hosts: TestHosts;
  let fx: RuntimeFixture;
  let nodes: TestNode[] = [];
  let seq = 0;

  before(async () => {
    hosts = await makeHosts(3, { guardRanges: [CLUSTER] });
  });
  after(async () => {
    await hosts?.cleanup();
  });
  beforeEach(async () => {
    fx = await new RuntimeFixture().setup();
    nodes = [];
  });
  afterEach(async () => {
    const problems: string[] = [];
    await fx.cleanup().catch((e: Error) => problems.push(e.message));
    for (const n of nodes) {
      await n.net.cleanup().catch((e: Error) => problems.push(e.message));
      await rm(n.dir, { recursive: true, force: true });
    }
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  async function node(i: number): Promise<TestNode> {
    const host = hosts.hosts[i]!;
    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${host.netns}` });
    const dir = await mkdtemp(join(tmpdir(), 'berth-net-'));
    const subnet = `10.244.${10 + i}.0/24`;
    const net = new NodeNetwork({ ops, logger: silentLogger(), stateDir: dir, subnet, clusterCidr: CLUSTER });
    const n = { host, ops, net, subnet, dir };
    nodes.push(n);
    await net.start();
    return n;
  }

  function cid(): string {
    seq++;
    return `${Date.now().toString(16)}${String(seq).padStart(4, '0')}`.padEnd(64, 'a');
  }

  async function server(n: TestNode, s: ContainerSpec = spec()): Promise<{ id: string; address: string }> {
    const id = cid();
    const r = await n.net.setup(id, s);
    const bundle = await fx.bundle(['httpd', '-f', '-p', '80', '-h', '/www'], { netnsPath: r.netnsPath }, webRoot);
    await fx.runtime.create(id, bundle, { start: true });
    return { id, address: r.ipAddress };
  }

  async function client(n: TestNode, cmd: string[], s: ContainerSpec = spec()): Promise<{ code: number; output: string; address: string }> {
    const id = cid();
    const r = await n.net.setup(id, s);
    const { exit, output } = await fx.runToExit(id, cmd, { netnsPath: r.netnsPath });
    return { code: exit.exitCode, output: output.join('\n'), address: r.ipAddress };
  }

  it('gives a container lo up and eth0 with an address from the node subnet when the network is cluster', async () => {
    const n = await node(0);
    const c = await client(n, ['sh', '-c', 'ip -4 addr show eth0; ip link show lo']);
    assert.equal(c.code, 0, c.output);
    const ip = parseIpv4(c.address);
    assert.ok(ip !== undefined && cidrContains(parseCidr(n.subnet, 's'), ip), `address ${c.address} not in ${n.subnet}`);
    assert.match(c.output, new RegExp(`inet ${c.address.replace(/\./g, '\\.')}/24`));
    assert.match(c.output, /<LOOPBACK,UP/);
    assert.ok(await n.ops.linkExists('berth0'), 'bridge berth0 exists in the node');
  });

  it('lets two containers on one node reach each other by address', async () => {
    const n = await node(0);
    const s = await server(n);
    const c = await client(n, fetchCmd(`http://${s.address}/cgi-bin/addr`));
    assert.equal(c.code, 0, c.output);
    assert.match(c.output, peerPattern(c.address));
  });

  it('routes to containers on other nodes without NAT when routes follow the node list', async () => {
    const ns = [await node(0), await node(1), await node(2)];
    const list = ns.map((n, i) => Node.fromJSON({ spec: { name: `node-${i}`, address: `${n.host.address}:7071` }, network: { subnet: n.subnet } }));
    for (const [i, n] of ns.entries()) {
      const routes = await new RouteSync({ ops: n.ops, logger: silentLogger(), self: `node-${i}`, clusterCidr: CLUSTER }).apply(list);
      assert.equal(routes.length, 2);
    }
    const s = await server(ns[2]!);
    const c = await client(ns[0]!, fetchCmd(`http://${s.address}/cgi-bin/addr`));
    assert.equal(c.code, 0, c.output);
    // The peer sees the client's own container address: no NAT between cluster addresses.
    assert.match(c.output, peerPattern(c.address));

    // A node leaving the list loses its route on the others.
    const sync0 = new RouteSync({ ops: ns[0]!.ops, logger: silentLogger(), self: 'node-0', clusterCidr: CLUSTER });
    const after = await sync0.apply(list.slice(0, 2));
    assert.deepEqual(after.map((r) => r.node), ['node-1']);
    assert.deepEqual((await ns[0]!.ops.listRoutes()).map((r) => r.dst), [ns[1]!.subnet]);
  });

  it('publishes a host port on the node and refuses the same port twice', async () => {
    const [a, b] = [await node(0), await node(1)];
    const published = spec({ ports: [{ name: '', container: 80, publish: 18080, protocol: 'tcp' }] });
    const s = await server(b, published);
    // From another namespace host, by the node's own address.
    const direct = await tryRunIn(a.host.netns, 'sh', fetchCmd(`http://${b.host.address}:18080/`, 'busybox wget').slice(1), { timeoutMs: 60_000 });
    assert.equal(direct.code, 0, direct.stderr + direct.stdout);
    assert.equal(direct.stdout, 'hello from berth\n');
    // From a container on the node itself (hairpin).
    const local = await client(b, fetchCmd(`http://${b.host.address}:18080/`));
    assert.equal(local.code, 0, local.output);
    assert.match(local.output, /hello from berth/);

    await assert.rejects(b.net.setup(cid(), published), (err: unknown) => err instanceof PortInUseError && err.message.includes('18080/tcp') && err.message.includes(s.id));
    await assert.rejects(b.net.setup(cid(), spec({ ports: [{ name: '', container: 80, publish: 70000, protocol: 'tcp' }] })), (err: unknown) => err instanceof InvalidArgumentError && /spec\.ports\[0\]\.publish: expected a port from 1 to 65535/.test(err.message));
    await assert.rejects(b.net.setup(cid(), spec({ ports: [{ name: '', container: 80, publish: 80, protocol: 'sctp' }] })), /spec\.ports\[0\]\.protocol: expected "tcp" or "udp"/);
    // Refused setups leave nothing behind: only the server and the hairpin client have records.
    assert.equal(b.net.containers().length, 2);

    // Removal closes the port.
    await fx.runtime.delete(s.id, { force: true });
    await b.net.teardown(s.id);
    const table = JSON.stringify(await b.ops.nftListTable(NFT_FAMILY, NFT_TABLE));
    assert.ok(!table.includes('18080'), 'the DNAT rule is gone');
  });

  it('gives lo only with network none and the node namespace with network host', async () => {
    const n = await node(0);
    const none = await client(n, ['sh', '-c', 'ip -o link show'], spec({ network: 'none' }));
    assert.equal(none.code, 0, none.output);
    assert.equal(none.address, '');
    assert.match(none.output, /lo: <LOOPBACK,UP/);
    assert.doesNotMatch(none.output, /eth0/);
    const host = await n.net.setup(cid(), spec({ network: 'host' }));
    assert.equal(host.netnsPath, `/run/netns/${n.host.netns}`);
    await assert.rejects(n.net.setup(cid(), spec({ network: 'bridge' })), /spec\.network: expected one of "cluster", "host", "none", got "bridge"/);
    await assert.rejects(n.net.setup(cid(), spec({ network: 'host', ports: [{ name: '', container: 80, publish: 8080, protocol: 'tcp' }] })), /publishing ports needs network "cluster"/);
  });

  it('releases the address and the namespace when a container network is torn down', async () => {
    const n = await node(0);
    const id = cid();
    const r = await n.net.setup(id, spec());
    const leases = join(n.dir, 'ipam', 'berth');
    assert.ok((await readdir(leases)).includes(r.ipAddress), 'host-local holds a lease');
    assert.ok(existsSync(r.netnsPath));
    await n.net.teardown(id);
    await n.net.teardown(id); // idempotent
    assert.ok(!(await readdir(leases)).includes(r.ipAddress), 'the lease is released');
    assert.ok(!existsSync(r.netnsPath), 'the namespace is deleted');
  });

  it('removes the bridge, routes, nft table and namespaces on cleanup', async () => {
    const [a, b] = [await node(0), await node(1)];
    const list = [a, b].map((n, i) => Node.fromJSON({ spec: { name: `node-${i}`, address: `${n.host.address}:7071` }, network: { subnet: n.subnet } }));
    await new RouteSync({ ops: a.ops, logger: silentLogger(), self: 'node-0', clusterCidr: CLUSTER }).apply(list);
    const r = await a.net.setup(cid(), spec({ ports: [{ name: '', container: 80, publish: 18081, protocol: 'udp' }] }));
    await a.net.cleanup();
    assert.equal(await a.ops.linkExists('berth0'), false);
    assert.equal(await a.ops.nftListTable(NFT_FAMILY, NFT_TABLE), undefined);
    assert.deepEqual(await a.ops.listRoutes(), []);
    assert.ok(!existsSync(r.netnsPath));
    assert.ok(!existsSync(a.dir));
  });
});
