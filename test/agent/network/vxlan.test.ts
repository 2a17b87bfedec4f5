/**
 * VXLAN routing (agent/network/vxlan.ts).
 *
 * Pure parts first: VTEP address and MAC derivation, settings, peer
 * selection and the diff of the device's state against the peers; then
 * VxlanSync's order of work and idempotence against a recording in-memory
 * NetOps.
 *
 * Then the real kernel: three namespace hosts from the hosts harness (no
 * default route, egress guard over the cluster range and the run's host
 * subnet, which the far segment is carved from, installed before any address
 * exists). host-0 is node A, host-1 a router,
 * host-2 node C; C is taken off the shared bridge and put behind the router
 * on a segment of its own (a veth pair between the two namespaces), so A and
 * C share no link: only their underlay addresses route between them, their
 * container subnets do not. Busybox
 * containers on A and C reach each other through the VXLAN devices the
 * agents' VxlanSync programs, and the server sees the client's own address.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHosts, run, tryRunIn, type TestHost, type TestHosts } from '../../harness/index.js';
import { RuntimeFixture } from '../runtime/busybox.js';
import {
  DEFAULT_VXLAN_DEVICE,
  desiredPeers,
  NodeNetwork,
  parseRoutingMode,
  parseUdpPort,
  parseVni,
  planIsEmpty,
  planVxlan,
  VXLAN_MTU,
  VxlanSync,
  vtepAddress,
  vtepMac,
  type VxlanPeer,
} from '../../../agent/network/index.js';
import {
  LinuxNetOps,
  type CniInvocation,
  type FdbEntry,
  type IpRoute,
  type NeighbourEntry,
  type NetOps,
  type VxlanLink,
  type VxlanOps,
  type VxlanSpec,
} from '../../../agent/sys/index.js';
import { InvalidArgumentError, parseCidr, silentLogger } from '../../../lib/index.js';
import { ContainerSpec, Node } from '../../../proto/gen/berth/v1/types.js';

const CLUSTER = '10.244.0.0/16';
const cluster = parseCidr(CLUSTER, 'cluster', { strict: true });

function node(name: string, underlay: string, subnet: string): Node {
  return Node.fromJSON({ spec: { name, address: `${underlay}:7071`, internalIp: underlay }, network: { subnet } });
}

describe('vxlan settings and derivation', () => {
  it('derives the VTEP address and a locally administered unicast MAC from the subnet', () => {
    assert.equal(vtepAddress('10.244.3.0/24'), '10.244.3.0');
    assert.equal(vtepMac('10.244.3.0/24'), '0e:be:0a:f4:03:00');
    assert.equal(vtepMac('10.244.255.0/24'), '0e:be:0a:f4:ff:00');
    const first = parseInt(vtepMac('10.244.3.0/24').slice(0, 2), 16);
    assert.equal(first & 0b10, 0b10, 'locally administered');
    assert.equal(first & 0b01, 0, 'unicast');
    assert.throws(() => vtepMac('10.244.3.7/24'), /subnet/);
  });

  it('accepts host-gw and vxlan and names the field and the allowed values otherwise', () => {
    assert.equal(parseRoutingMode('host-gw', '--routing'), 'host-gw');
    assert.equal(parseRoutingMode('vxlan', '--routing'), 'vxlan');
    assert.throws(() => parseRoutingMode('geneve', '--routing'), (err: unknown) =>
      err instanceof InvalidArgumentError && err.field === '--routing' && err.message === '--routing: expected one of "host-gw", "vxlan", got "geneve"');
    assert.equal(parseVni('42', '--vxlan-id'), 42);
    assert.throws(() => parseVni('0', '--vxlan-id'), /--vxlan-id: expected a VXLAN network identifier from 1 to 16777215, got "0"/);
    assert.throws(() => parseVni('16777216', 'BERTH_VXLAN_ID'), /BERTH_VXLAN_ID: expected a VXLAN network identifier/);
    assert.equal(parseUdpPort('8472', '--vxlan-port'), 8472);
    assert.throws(() => parseUdpPort('70000', '--vxlan-port'), /--vxlan-port: expected a UDP port from 1 to 65535, got "70000"/);
    assert.throws(() => parseUdpPort('x', '--vxlan-port'), /--vxlan-port: expected a UDP port/);
  });

  it('programs every other node with a cluster subnet and an underlay address as a peer', () => {
    const nodes = [
      node('a', '10.0.0.1', '10.244.1.0/24'),
      node('b', '10.0.0.2', '10.244.2.0/24'),
      node('c', '10.0.0.3', ''),
      node('d', '10.0.0.4', '10.99.4.0/24'),
      node('e', '127.0.0.1', '10.244.5.0/24'),
      Node.fromJSON({ spec: { name: 'f', address: 'f.example:7071' }, network: { subnet: '10.244.6.0/24' } }),
    ];
    assert.deepEqual(desiredPeers(nodes, 'a', cluster), [{ node: 'b', subnet: '10.244.2.0/24', underlay: '10.0.0.2', vtep: '10.244.2.0', mac: '0e:be:0a:f4:02:00' }]);
  });
});

describe('planVxlan', () => {
  const b: VxlanPeer = { node: 'b', subnet: '10.244.2.0/24', underlay: '10.0.0.2', vtep: '10.244.2.0', mac: '0e:be:0a:f4:02:00' };
  const c: VxlanPeer = { node: 'c', subnet: '10.244.3.0/24', underlay: '10.0.0.3', vtep: '10.244.3.0', mac: '0e:be:0a:f4:03:00' };
  const dev = DEFAULT_VXLAN_DEVICE;

  it('sets the FDB entry, neighbour and route of every peer when the device is empty', () => {
    const plan = planVxlan([b, c], { fdb: [], neighbours: [], routes: [] }, dev, cluster);
    assert.deepEqual(plan.setFdb, [{ mac: b.mac, dst: b.underlay }, { mac: c.mac, dst: c.underlay }]);
    assert.deepEqual(plan.setNeighbours, [{ address: b.vtep, mac: b.mac }, { address: c.vtep, mac: c.mac }]);
    assert.deepEqual(plan.setRoutes, [{ dst: b.subnet, gateway: b.vtep }, { dst: c.subnet, gateway: c.vtep }]);
    assert.deepEqual([plan.deleteFdb, plan.deleteNeighbours, plan.deleteRoutes], [[], [], []]);
  });

  it('changes nothing when the state matches', () => {
    const plan = planVxlan([b], {
      fdb: [{ mac: b.mac, dst: b.underlay }],
      neighbours: [{ address: b.vtep, mac: b.mac, permanent: true }],
      routes: [{ dst: b.subnet, gateway: b.vtep, dev }],
    }, dev, cluster);
    assert.ok(planIsEmpty(plan), JSON.stringify(plan));
  });

  it('removes the entries of a node that left, fixes a moved underlay and leaves others\' routes and the kernel\'s neighbours alone', () => {
    const plan = planVxlan([b], {
      fdb: [{ mac: b.mac, dst: '10.0.0.99' }, { mac: c.mac, dst: c.underlay }],
      neighbours: [{ address: b.vtep, mac: b.mac, permanent: true }, { address: c.vtep, mac: c.mac, permanent: true }, { address: '10.244.9.9', mac: '0e:00:00:00:00:01', permanent: false }],
      routes: [
        { dst: b.subnet, gateway: '10.0.0.2' }, // a host-gw route of the same subnet: replaced
        { dst: c.subnet, gateway: c.vtep, dev },
        { dst: '192.168.0.0/16', gateway: '10.0.0.1' }, // outside the cluster range: not ours to judge
      ],
    }, dev, cluster);
    assert.deepEqual(plan.deleteRoutes, [c.subnet]);
    assert.deepEqual(plan.deleteNeighbours, [c.vtep]);
    assert.deepEqual(plan.deleteFdb, [{ mac: b.mac, dst: '10.0.0.99' }, { mac: c.mac, dst: c.underlay }]);
    assert.deepEqual(plan.setFdb, [{ mac: b.mac, dst: b.underlay }]);
    assert.deepEqual(plan.setNeighbours, []);
    assert.deepEqual(plan.setRoutes, [{ dst: b.subnet, gateway: b.vtep }]);
  });
});

/** An in-memory node netns with one possible VXLAN device; records every change. */
class MemoryVxlanOps implements Pick<NetOps, 'listRoutes' | 'deleteRoute' | 'replaceRoute' | 'deleteLink'>, VxlanOps {
  link: VxlanLink | undefined;
  fdb: FdbEntry[] = [];
  neigh: NeighbourEntry[] = [];
  routes: IpRoute[] = [];
  changes: string[] = [];
  failRoutesTo = '';

  async getVxlan(): Promise<VxlanLink | undefined> {
    return this.link ? { ...this.link, addresses: [...this.link.addresses] } : undefined;
  }
  async createVxlan(s: VxlanSpec): Promise<void> {
    this.changes.push(`create ${s.name} id ${s.vni} local ${s.local} port ${s.port}`);
    this.link = { name: s.name, kind: 'vxlan', vni: s.vni, local: s.local, port: s.port, learning: false, mtu: s.mtu, mac: s.mac, up: true, addresses: [] };
  }
  async setLink(name: string, a: { mtu: number; mac: string }): Promise<void> {
    this.changes.push(`set ${name}`);
    if (this.link) Object.assign(this.link, a, { up: true });
  }
  async addAddress(_dev: string, cidr: string): Promise<void> {
    this.changes.push(`addr add ${cidr}`);
    this.link?.addresses.push(cidr);
  }
  async deleteAddress(_dev: string, cidr: string): Promise<void> {
    this.changes.push(`addr del ${cidr}`);
    if (this.link) this.link.addresses = this.link.addresses.filter((a) => a !== cidr);
  }
  async deleteLink(name: string): Promise<void> {
    this.changes.push(`link del ${name}`);
    this.link = undefined;
    this.fdb = [];
    this.neigh = [];
    this.routes = this.routes.filter((r) => r.dev !== name);
  }
  async listFdb(): Promise<FdbEntry[]> {
    return [...this.fdb];
  }
  async replaceFdb(_dev: string, e: FdbEntry): Promise<void> {
    this.changes.push(`fdb ${e.mac} ${e.dst}`);
    this.fdb = [...this.fdb.filter((f) => f.mac !== e.mac), e];
  }
  async deleteFdb(_dev: string, e: FdbEntry): Promise<void> {
    this.changes.push(`fdb del ${e.mac} ${e.dst}`);
    this.fdb = this.fdb.filter((f) => !(f.mac === e.mac && f.dst === e.dst));
  }
  async listNeighbours(): Promise<NeighbourEntry[]> {
    return [...this.neigh];
  }
  async replaceNeighbour(_dev: string, address: string, mac: string): Promise<void> {
    this.changes.push(`neigh ${address}`);
    this.neigh = [...this.neigh.filter((n) => n.address !== address), { address, mac, permanent: true }];
  }
  async deleteNeighbour(_dev: string, address: string): Promise<void> {
    this.changes.push(`neigh del ${address}`);
    this.neigh = this.neigh.filter((n) => n.address !== address);
  }
  async replaceRouteOnlink(dst: string, gateway: string, dev: string): Promise<void> {
    if (dst === this.failRoutesTo) throw new Error('Nexthop has invalid gateway');
    this.changes.push(`route ${dst} via ${gateway}`);
    this.routes = [...this.routes.filter((r) => r.dst !== dst), { dst, gateway, dev }];
  }
  async replaceRoute(dst: string, gateway: string): Promise<void> {
    this.routes = [...this.routes.filter((r) => r.dst !== dst), { dst, gateway }];
  }
  async deleteRoute(dst: string): Promise<void> {
    this.changes.push(`route del ${dst}`);
    this.routes = this.routes.filter((r) => r.dst !== dst);
  }
  async listRoutes(): Promise<IpRoute[]> {
    return [...this.routes];
  }
}

/** MemoryVxlanOps as the full NetOps & VxlanOps VxlanSync takes; the container-side methods are never called by it. */
function memoryOps(): { mem: MemoryVxlanOps; ops: NetOps & VxlanOps } {
  const mem = new MemoryVxlanOps();
  const unused = (what: string) => () => { throw new Error(`VxlanSync called ${what}`); };
  const rest = {
    cni: unused('cni') as (c: CniInvocation) => Promise<Record<string, unknown>>,
    createNetns: unused('createNetns'), deleteNetns: unused('deleteNetns'), netnsExists: unused('netnsExists'),
    nftApply: unused('nftApply'), nftListTable: unused('nftListTable'), nftDeleteTable: unused('nftDeleteTable'),
    linkExists: unused('linkExists'), nodeAddresses: unused('nodeAddresses'), nodeNetnsPath: unused('nodeNetnsPath'),
  };
  return { mem, ops: Object.assign(mem, rest) as unknown as NetOps & VxlanOps };
}

describe('VxlanSync', () => {
  const list = [node('a', '10.0.0.1', '10.244.1.0/24'), node('b', '10.0.0.2', '10.244.2.0/24'), node('c', '10.0.0.3', '10.244.3.0/24')];

  it('creates the device with the VTEP address and programs the peers, then changes nothing on the next call', async () => {
    const { mem, ops } = memoryOps();
    const sync = new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER });
    const peers = await sync.apply(list);
    assert.deepEqual(peers.map((p) => p.node), ['b', 'c']);
    assert.deepEqual(mem.link && { vni: mem.link.vni, local: mem.link.local, port: mem.link.port, mtu: mem.link.mtu, mac: mem.link.mac, addresses: mem.link.addresses },
      { vni: 1, local: '10.0.0.1', port: 4789, mtu: VXLAN_MTU, mac: '0e:be:0a:f4:01:00', addresses: ['10.244.1.0/32'] });
    // FDB before neighbour before route, per peer kind.
    assert.deepEqual(mem.changes.slice(2), [
      'fdb 0e:be:0a:f4:02:00 10.0.0.2', 'fdb 0e:be:0a:f4:03:00 10.0.0.3',
      'neigh 10.244.2.0', 'neigh 10.244.3.0',
      'route 10.244.2.0/24 via 10.244.2.0', 'route 10.244.3.0/24 via 10.244.3.0',
    ]);
    mem.changes = [];
    await sync.apply(list);
    assert.deepEqual(mem.changes, []);
  });

  it('re-creates the device when the VNI or the underlay address changes and drops a node that left', async () => {
    const { mem, ops } = memoryOps();
    await new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER }).apply(list);
    mem.changes = [];
    const moved = [node('a', '10.0.0.11', '10.244.1.0/24'), list[1]!];
    const peers = await new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER, vni: 7 }).apply(moved);
    assert.deepEqual(peers.map((p) => p.node), ['b']);
    assert.equal(mem.changes[0], 'link del berth.vx');
    assert.equal(mem.changes[1], 'create berth.vx id 7 local 10.0.0.11 port 4789');
    assert.deepEqual(mem.routes.map((r) => r.dst), ['10.244.2.0/24']);
    assert.deepEqual(mem.fdb, [{ mac: '0e:be:0a:f4:02:00', dst: '10.0.0.2' }]);
  });

  it('reports a peer whose route failed as not in place and retries it on the next call', async () => {
    const { mem, ops } = memoryOps();
    const sync = new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER });
    mem.failRoutesTo = '10.244.3.0/24';
    assert.deepEqual((await sync.apply(list)).map((p) => p.node), ['b']);
    mem.failRoutesTo = '';
    mem.changes = [];
    assert.deepEqual((await sync.apply(list)).map((p) => p.node), ['b', 'c']);
    assert.deepEqual(mem.changes, ['route 10.244.3.0/24 via 10.244.3.0']);
  });

  it('waits without touching anything while its own record has no subnet, and refuses a non-VXLAN link of its name', async () => {
    const { mem, ops } = memoryOps();
    const sync = new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER });
    assert.deepEqual(await sync.apply([node('a', '10.0.0.1', ''), list[1]!]), []);
    assert.deepEqual(await sync.apply(list.slice(1)), []);
    assert.deepEqual(mem.changes, []);
    mem.link = { name: 'berth.vx', kind: 'bridge', vni: 0, local: '', port: 0, learning: true, mtu: 1500, mac: '02:00:00:00:00:01', up: true, addresses: [] };
    await assert.rejects(sync.apply(list), /link "berth\.vx" exists and is a "bridge" link, not a VXLAN device/);
    assert.deepEqual(mem.changes, []);
  });

  it('refuses a bad VNI or port at construction', () => {
    const { ops } = memoryOps();
    assert.throws(() => new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER, vni: 0 }), /VXLAN network identifier/);
    assert.throws(() => new VxlanSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: CLUSTER, port: 0 }), /UDP port/);
  });
});

/**
 * node-c's own segment behind the router: a /30 at .200 of the run's host subnet (the harness
 * claims that subnet for this run alone and its guard covers it), routed more specifically than
 * the shared /24. Set in before().
 */
const far = { net: '', router: '', c: '' };

/** A busybox httpd root: a CGI printing the client's address, and a 200 kB file (bigger than any MTU, so a wrong MTU shows). */
async function webRoot(rootfs: string): Promise<void> {
  await mkdir(join(rootfs, 'www', 'cgi-bin'), { recursive: true });
  await writeFile(join(rootfs, 'www', 'big'), 'x'.repeat(200_000));
  await writeFile(join(rootfs, 'www', 'cgi-bin', 'addr'), '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "peer=$REMOTE_ADDR"\n');
  await chmod(join(rootfs, 'www', 'cgi-bin', 'addr'), 0o755);
}

function fetchCmd(url: string): string[] {
  return ['sh', '-c', `for i in $(seq 1 50); do if timeout 5 wget -q -O - ${url}; then exit 0; fi; sleep 0.2; done; echo "no answer from ${url}"; exit 1`];
}

function peerPattern(address: string): RegExp {
  return new RegExp(`peer=(\\[::ffff:)?${address.replace(/\./g, '\\.')}\\]?$`, 'm');
}

interface VxNode {
  name: string;
  host: TestHost;
  underlay: string;
  subnet: string;
  ops: LinuxNetOps;
  net: NodeNetwork;
  dir: string;
  sync: VxlanSync;
}

describe('VxlanSync in namespace hosts that share no link', function () {
  this.timeout(180_000);
  let hosts: TestHosts | undefined;
  let fx: RuntimeFixture;
  let nodes: VxNode[] = [];
  let seq = 0;

  before(async () => {
    hosts = await makeHosts(3, { guardRanges: [CLUSTER] });
    const [a, r, c] = hosts.hosts as [TestHost, TestHost, TestHost];
    const prefix = hosts.subnet.split('.').slice(0, 3).join('.');
    Object.assign(far, { net: `${prefix}.200/30`, router: `${prefix}.201`, c: `${prefix}.202` });
    // C leaves the shared bridge and sits behind the router R on a segment of its own.
    await run('ip', ['-n', c.netns, 'addr', 'flush', 'dev', 'eth0']);
    await run('ip', ['-n', c.netns, 'link', 'set', 'eth0', 'down']);
    await run('ip', ['link', 'add', 'eth1', 'netns', r.netns, 'type', 'veth', 'peer', 'name', 'eth1', 'netns', c.netns]);
    await run('ip', ['-n', r.netns, 'addr', 'add', `${far.router}/30`, 'dev', 'eth1']);
    await run('ip', ['-n', c.netns, 'addr', 'add', `${far.c}/30`, 'dev', 'eth1']);
    await run('ip', ['-n', r.netns, 'link', 'set', 'eth1', 'up']);
    await run('ip', ['-n', c.netns, 'link', 'set', 'eth1', 'up']);
    await run('ip', ['netns', 'exec', r.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // Only the underlay addresses route; the router knows nothing of the container subnets.
    await run('ip', ['-n', a.netns, 'route', 'add', far.net, 'via', r.address]);
    await run('ip', ['-n', c.netns, 'route', 'add', hosts.subnet, 'via', far.router]);
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
      await n.sync.clear().catch((e: Error) => problems.push(e.message));
      await n.net.cleanup().catch((e: Error) => problems.push(e.message));
      await rm(n.dir, { recursive: true, force: true });
    }
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  async function vxNode(name: string, host: TestHost, underlay: string, subnet: string): Promise<VxNode> {
    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${host.netns}` });
    const dir = await mkdtemp(join(tmpdir(), 'berth-vxlan-'));
    const net = new NodeNetwork({ ops, logger: silentLogger(), stateDir: dir, subnet, clusterCidr: CLUSTER, mtu: VXLAN_MTU });
    const sync = new VxlanSync({ ops, logger: silentLogger(), self: name, clusterCidr: CLUSTER });
    const n = { name, host, underlay, subnet, ops, net, dir, sync };
    nodes.push(n);
    await net.start();
    return n;
  }

  async function pair(): Promise<[VxNode, VxNode, Node[]]> {
    const [a, , c] = hosts!.hosts as [TestHost, TestHost, TestHost];
    const na = await vxNode('node-a', a, a.address, '10.244.40.0/24');
    const nc = await vxNode('node-c', c, far.c, '10.244.42.0/24');
    return [na, nc, [node(na.name, na.underlay, na.subnet), node(nc.name, nc.underlay, nc.subnet)]];
  }

  function cid(): string {
    seq++;
    return `${Date.now().toString(16)}${String(seq).padStart(4, '0')}`.padEnd(64, 'b');
  }

  async function server(n: VxNode): Promise<string> {
    const id = cid();
    const r = await n.net.setup(id, ContainerSpec.fromJSON({ image: 'busybox' }));
    const bundle = await fx.bundle(['httpd', '-f', '-p', '80', '-h', '/www'], { netnsPath: r.netnsPath }, webRoot);
    await fx.runtime.create(id, bundle, { start: true });
    return r.ipAddress;
  }

  async function client(n: VxNode, script: string): Promise<{ code: number; output: string; address: string }> {
    const id = cid();
    const r = await n.net.setup(id, ContainerSpec.fromJSON({ image: 'busybox' }));
    const { exit, output } = await fx.runToExit(id, ['sh', '-c', script], { netnsPath: r.netnsPath });
    return { code: exit.exitCode, output: output.join('\n'), address: r.ipAddress };
  }

  async function state(n: VxNode): Promise<unknown> {
    return {
      link: await n.ops.getVxlan(DEFAULT_VXLAN_DEVICE),
      fdb: await n.ops.listFdb(DEFAULT_VXLAN_DEVICE),
      neigh: await n.ops.listNeighbours(DEFAULT_VXLAN_DEVICE),
      routes: await n.ops.listRoutes(),
    };
  }

  it('carries container traffic between nodes without a shared link, unNATed, at MTU 1450', async () => {
    const [a, c, list] = await pair();
    assert.deepEqual((await a.sync.apply(list)).map((p) => p.node), ['node-c']);
    assert.deepEqual((await c.sync.apply(list)).map((p) => p.node), ['node-a']);
    const link = await a.ops.getVxlan(DEFAULT_VXLAN_DEVICE);
    assert.deepEqual(link && { kind: link.kind, vni: link.vni, local: link.local, port: link.port, learning: link.learning, mtu: link.mtu, mac: link.mac, up: link.up, addresses: link.addresses },
      { kind: 'vxlan', vni: 1, local: a.underlay, port: 4789, learning: false, mtu: 1450, mac: vtepMac(a.subnet), up: true, addresses: ['10.244.40.0/32'] });
    assert.deepEqual(await a.ops.listFdb(DEFAULT_VXLAN_DEVICE), [{ mac: vtepMac(c.subnet), dst: far.c }]);
    assert.deepEqual(await a.ops.listNeighbours(DEFAULT_VXLAN_DEVICE), [{ address: '10.244.42.0', mac: vtepMac(c.subnet), permanent: true }]);
    assert.deepEqual((await a.ops.listRoutes()).map((r) => [r.dst, r.gateway, r.dev]), [[c.subnet, '10.244.42.0', DEFAULT_VXLAN_DEVICE]]);

    const addr = await server(c);
    const got = await client(a, `cat /sys/class/net/eth0/mtu; (${fetchCmd(`http://${addr}/cgi-bin/addr`)[2]}) && timeout 20 wget -q -O - http://${addr}/big | wc -c`);
    assert.equal(got.code, 0, got.output);
    const [mtu] = got.output.split('\n');
    assert.equal(mtu, '1450');
    // The server sees the client's own container address: no NAT between cluster addresses.
    assert.match(got.output, peerPattern(got.address));
    assert.match(got.output, /^200000$/m);
    // The node itself (agent-side traffic, e.g. a routing-mesh hop) reaches the container too, from its VTEP address.
    const fromNode = await tryRunIn(a.host.netns, 'sh', ['-c', `timeout 10 busybox wget -q -O - http://${addr}/cgi-bin/addr`], { timeoutMs: 30_000 });
    assert.equal(fromNode.code, 0, fromNode.stderr + fromNode.stdout);
    assert.match(fromNode.stdout, peerPattern(vtepAddress(a.subnet)));
    // The router never saw a container address: its routing table has only the underlay segments.
    const routes = await tryRunIn(hosts!.hosts[1]!.netns, 'ip', ['-4', 'route', 'show']);
    assert.doesNotMatch(routes.stdout, /10\.244\./);
  });

  it('restores changed or missing entries, removes a node that left and leaves nothing behind on clear', async () => {
    const [a, c, list] = await pair();
    await a.sync.apply(list);
    const good = await state(a);
    assert.deepEqual(await state(a), good);
    // Drift: someone deletes the route and the neighbour and points the FDB entry elsewhere.
    await a.ops.deleteRoute(c.subnet);
    await a.ops.deleteNeighbour(DEFAULT_VXLAN_DEVICE, '10.244.42.0');
    await a.ops.deleteFdb(DEFAULT_VXLAN_DEVICE, { mac: vtepMac(c.subnet), dst: far.c });
    await a.ops.replaceFdb(DEFAULT_VXLAN_DEVICE, { mac: vtepMac(c.subnet), dst: far.router });
    await a.sync.apply(list);
    assert.deepEqual(await state(a), good);

    // C leaves the node list: its entries and route go, the device stays.
    assert.deepEqual(await a.sync.apply(list.slice(0, 1)), []);
    assert.deepEqual(await a.ops.listFdb(DEFAULT_VXLAN_DEVICE), []);
    assert.deepEqual((await a.ops.listNeighbours(DEFAULT_VXLAN_DEVICE)).filter((n) => n.permanent), []);
    assert.deepEqual(await a.ops.listRoutes(), []);
    assert.ok(await a.ops.getVxlan(DEFAULT_VXLAN_DEVICE));

    // Another VNI re-creates the device.
    await new VxlanSync({ ops: a.ops, logger: silentLogger(), self: a.name, clusterCidr: CLUSTER, vni: 9 }).apply(list);
    assert.equal((await a.ops.getVxlan(DEFAULT_VXLAN_DEVICE))?.vni, 9);

    await a.sync.clear();
    await a.net.cleanup();
    assert.equal(await a.ops.getVxlan(DEFAULT_VXLAN_DEVICE), undefined);
    assert.deepEqual(await a.ops.listRoutes(), []);
    const links = await tryRunIn(a.host.netns, 'ip', ['-o', 'link', 'show']);
    assert.doesNotMatch(links.stdout, /berth/);
  });
});
