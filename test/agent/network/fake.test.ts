/**
 * agent/network logic against a recording NetOps: what happens when the
 * kernel side fails (a DNAT rule missing after nft -f, a CNI error), route
 * planning from the node list, the nft script, and the agent without
 * container networking. The kernel itself is exercised in network.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { desiredRoutes, DisabledNetwork, NodeNetwork, renderTable, RouteSync, PortInUseError, NoSubnetError } from '../../../agent/network/index.js';
import { CniPluginError, type CniInvocation, type IpRoute, type NetOps } from '../../../agent/sys/index.js';
import { FailedPreconditionError, parseClusterCidr, silentLogger } from '../../../lib/index.js';
import { ContainerSpec, Node } from '../../../proto/gen/berth/v1/types.js';

class FakeNetOps implements NetOps {
  calls: string[] = [];
  netns = new Set<string>();
  routes: IpRoute[] = [];
  lastScript = '';
  /** How many DNAT rules the "kernel" drops from each nft -f. */
  dropDnat = 0;
  failBridgeAdd = false;
  private nextIp = 2;

  async cni(call: CniInvocation): Promise<Record<string, unknown>> {
    this.calls.push(`cni ${call.plugin} ${call.command} ${call.containerId}`);
    if (call.plugin === 'bridge' && call.command === 'ADD') {
      if (this.failBridgeAdd) throw new CniPluginError('bridge', 'ADD', 11, 'no free address');
      return { ips: [{ address: `10.244.9.${this.nextIp++}/24`, gateway: '10.244.9.1' }] };
    }
    return {};
  }
  async createNetns(name: string): Promise<string> {
    this.calls.push(`netns add ${name}`);
    this.netns.add(name);
    return `/run/netns/${name}`;
  }
  async deleteNetns(name: string): Promise<void> {
    this.calls.push(`netns delete ${name}`);
    this.netns.delete(name);
  }
  netnsExists(name: string): boolean {
    return this.netns.has(name);
  }
  async replaceRoute(dst: string, gateway: string): Promise<void> {
    this.routes = [...this.routes.filter((r) => r.dst !== dst), { dst, gateway }];
  }
  async deleteRoute(dst: string): Promise<void> {
    this.routes = this.routes.filter((r) => r.dst !== dst);
  }
  async listRoutes(): Promise<IpRoute[]> {
    return [...this.routes];
  }
  async nftApply(script: string): Promise<void> {
    this.lastScript = script;
  }
  async nftListTable(): Promise<unknown[]> {
    const n = Math.max(0, (this.lastScript.match(/ dnat to /g) ?? []).length - this.dropDnat);
    return Array.from({ length: n }, () => ({ rule: { expr: [{ dnat: { addr: '10.244.9.2', port: 80 } }] } }));
  }
  async nftDeleteTable(): Promise<void> {}
  async deleteLink(): Promise<void> {}
  async linkExists(): Promise<boolean> {
    return true;
  }
  async nodeAddresses(): Promise<{ ifname: string; address: string; prefixLen: number }[]> {
    return [];
  }
  nodeNetnsPath(): string {
    return '/proc/1/ns/net';
  }
}

function spec(extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return { ...ContainerSpec.fromJSON({ image: 'busybox' }), ...extra };
}

const published = (publish: number, protocol = 'tcp', hostIp?: string) => spec({ ports: [{ name: '', container: 80, publish, protocol, ...(hostIp ? { hostIp } : {}) }] });

describe('NodeNetwork (recording NetOps)', () => {
  let dir: string;
  let ops: FakeNetOps;
  let net: NodeNetwork;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-netfake-'));
    ops = new FakeNetOps();
    net = new NodeNetwork({ ops, logger: silentLogger(), stateDir: dir, subnet: '10.244.9.0/24', clusterCidr: '10.244.0.0/16' });
    await net.start();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the setup and undoes it when a DNAT rule is missing after nft -f', async () => {
    ops.dropDnat = 1;
    await assert.rejects(net.setup('c1', published(8080)), /failed to install published ports: table "ip berth" has 1 DNAT rules after nft -f; expected 2/);
    assert.equal(ops.netns.size, 0, 'the namespace is deleted');
    assert.ok(ops.calls.includes('cni bridge DEL c1'), 'the address is released');
    assert.deepEqual(net.containers(), []);
  });

  it('undoes everything when the bridge plugin fails', async () => {
    ops.failBridgeAdd = true;
    await assert.rejects(net.setup('c1', published(8080)), (err: unknown) => err instanceof CniPluginError && /CNI plugin "bridge" ADD: error 11: no free address/.test(err.message));
    assert.equal(ops.netns.size, 0);
    assert.deepEqual(net.containers(), []);
    // The port is free again.
    ops.failBridgeAdd = false;
    assert.equal((await net.setup('c2', published(8080))).ipAddress.startsWith('10.244.9.'), true);
  });

  it('refuses a host port another container publishes unless protocol or host address differ', async () => {
    await net.setup('a', published(8080));
    await assert.rejects(net.setup('b', published(8080)), (err: unknown) => err instanceof PortInUseError && err.owner === 'a' && err.message.includes('spec.ports[0].publish'));
    await assert.rejects(net.setup('b', published(8080, 'tcp', '10.0.0.5')), PortInUseError);
    await net.setup('c', published(8080, 'udp'));
    await net.setup('d', published(8081, 'tcp', '10.0.0.5'));
    await net.setup('e', published(8081, 'tcp', '10.0.0.6'));
    await assert.rejects(net.setup('f', spec({ ports: [{ name: '', container: 80, publish: 9000, protocol: 'tcp' }, { name: '', container: 81, publish: 9000, protocol: 'tcp' }] })), /spec\.ports\[1\]\.publish: host port 9000\/tcp is given twice/);
    await assert.rejects(net.setup('g', published(9001, 'tcp', '127.0.0.1')), /loopback addresses cannot be published to/);
    assert.deepEqual(net.containers().sort(), ['a', 'c', 'd', 'e']);
  });

  it('keeps records across an agent restart, so teardown still releases the address and the port', async () => {
    await net.setup('a', published(8080));
    const again = new NodeNetwork({ ops, logger: silentLogger(), stateDir: dir, subnet: '10.244.9.0/24', clusterCidr: '10.244.0.0/16' });
    await again.start();
    assert.deepEqual(again.containers(), ['a']);
    assert.match(ops.lastScript, /tcp dport 8080 dnat to 10\.244\.9\.\d+:80/);
    await assert.rejects(again.setup('b', published(8080)), PortInUseError);
    await again.teardown('a');
    assert.doesNotMatch(ops.lastScript, /dport 8080/);
    await again.setup('b', published(8080));
  });

  it('refuses cluster networking without a subnet, but not host or none', async () => {
    const bare = new NodeNetwork({ ops, logger: silentLogger(), stateDir: join(dir, 'bare'), clusterCidr: '10.244.0.0/16' });
    await bare.start();
    await assert.rejects(bare.setup('a', spec()), NoSubnetError);
    assert.equal((await bare.setup('b', spec({ network: 'host' }))).netnsPath, '/proc/1/ns/net');
    assert.equal((await bare.setup('c', spec({ network: 'none' }))).ipAddress, '');
  });
});

describe('renderTable', () => {
  it('DNATs published ports, masquerades hairpin and egress, and exempts the cluster range', () => {
    const s = renderTable({
      bridge: 'berth0', subnet: '10.244.3.0/24', clusterCidr: '10.244.0.0/16',
      ports: [
        { containerId: 'abc', containerIp: '10.244.3.2', hostIp: '', hostPort: 8080, containerPort: 80, protocol: 'tcp' },
        { containerId: 'def', containerIp: '10.244.3.3', hostIp: '10.0.0.2', hostPort: 53, containerPort: 5353, protocol: 'udp' },
      ],
    });
    // Replaced as a whole: the table is made, deleted and defined again in one script.
    assert.match(s, /^table ip berth \{\}\ndelete table ip berth\ntable ip berth \{/);
    assert.match(s, /fib daddr type local tcp dport 8080 dnat to 10\.244\.3\.2:80/);
    assert.match(s, /fib daddr type local ip daddr != 127\.0\.0\.0\/8 tcp dport 8080 dnat to 10\.244\.3\.2:80/);
    assert.match(s, /ip daddr 10\.0\.0\.2 udp dport 53 dnat to 10\.244\.3\.3:5353/);
    const post = s.slice(s.indexOf('chain postrouting'));
    assert.ok(post.indexOf('ip daddr 10.244.0.0/16 return') < post.indexOf('oifname != "berth0" masquerade'), 'cluster traffic returns before the egress masquerade');
    assert.throws(() => renderTable({ bridge: 'x"; drop', subnet: '', clusterCidr: '10.244.0.0/16', ports: [] }), /refusing/);
    assert.throws(() => renderTable({ bridge: 'berth0', subnet: '', clusterCidr: '10.244.0.0/16', ports: [{ containerId: 'a', containerIp: '1.2.3.4; flush ruleset', hostIp: '', hostPort: 1, containerPort: 1, protocol: 'tcp' }] }), /refusing address/);
  });
});

describe('desiredRoutes and RouteSync', () => {
  const cluster = parseClusterCidr('10.244.0.0/16');
  const node = (name: string, address: string, subnet: string, internalIp?: string) => Node.fromJSON({ spec: { name, address, ...(internalIp ? { internalIp } : {}) }, network: { subnet } });

  it('routes every other node subnet through its internal IP or the host of its address', () => {
    const nodes = [
      node('a', '10.0.0.1:7071', '10.244.1.0/24'),
      node('b', '10.0.0.2:7071', '10.244.2.0/24'),
      node('c', '127.0.0.1:7071', '10.244.3.0/24', '10.0.0.3'),
      node('d', '127.0.0.1:7071', '10.244.4.0/24'),
      node('e', '10.0.0.5:7071', '192.168.0.0/24'),
      node('f', 'host-f:7071', '10.244.6.0/24'),
    ];
    assert.deepEqual(desiredRoutes(nodes, 'a', cluster), [
      { node: 'b', subnet: '10.244.2.0/24', via: '10.0.0.2' },
      { node: 'c', subnet: '10.244.3.0/24', via: '10.0.0.3' },
    ]);
  });

  it('adds, changes and deletes only its own routes inside the cluster range', async () => {
    const ops = new FakeNetOps();
    ops.routes = [{ dst: '10.244.7.0/24', gateway: '10.0.0.7' }, { dst: '172.16.0.0/16', gateway: '10.0.0.9' }];
    const sync = new RouteSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: '10.244.0.0/16' });
    await sync.apply([node('a', '10.0.0.1:1', '10.244.1.0/24'), node('b', '10.0.0.2:1', '10.244.2.0/24')]);
    assert.deepEqual(ops.routes.map((r) => `${r.dst} via ${r.gateway}`).sort(), ['10.244.2.0/24 via 10.0.0.2', '172.16.0.0/16 via 10.0.0.9']);
    await sync.apply([node('b', '10.0.0.20:1', '10.244.2.0/24')]);
    assert.deepEqual(ops.routes.map((r) => `${r.dst} via ${r.gateway}`).sort(), ['10.244.2.0/24 via 10.0.0.20', '172.16.0.0/16 via 10.0.0.9']);
    await sync.apply([]);
    assert.deepEqual(ops.routes.map((r) => r.dst), ['172.16.0.0/16']);
  });
});

describe('DisabledNetwork', () => {
  it('gives an empty namespace, shares the node one for host, and refuses published ports', async () => {
    const d = new DisabledNetwork('/run/netns/node');
    assert.deepEqual(await d.setup('a', spec()), { netnsPath: '', ipAddress: '' });
    assert.deepEqual(await d.setup('a', spec({ network: 'host' })), { netnsPath: '/run/netns/node', ipAddress: '' });
    await assert.rejects(d.setup('a', published(8080)), (err: unknown) => err instanceof FailedPreconditionError && /berth agent --network cni/.test(err.message));
    await assert.rejects(d.setup('a', spec({ network: 'bridge' })), /spec\.network: expected one of/);
  });
});

describe('RouteSync.start', () => {
  it('polls the node source until stopped without piling up abort listeners', async () => {
    const ops = new FakeNetOps();
    const sync = new RouteSync({ ops, logger: silentLogger(), self: 'a', clusterCidr: '10.244.0.0/16' });
    let calls = 0;
    const ac = new AbortController();
    let added = 0;
    const add = ac.signal.addEventListener.bind(ac.signal);
    ac.signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
      added++;
      add(...args);
    }) as AbortSignal['addEventListener'];
    let removed = 0;
    const remove = ac.signal.removeEventListener.bind(ac.signal);
    ac.signal.removeEventListener = ((...args: Parameters<AbortSignal['removeEventListener']>) => {
      removed++;
      remove(...args);
    }) as AbortSignal['removeEventListener'];
    const done = sync.start({
      listNodes: async () => {
        calls++;
        if (calls === 5) ac.abort();
        return [Node.fromJSON({ spec: { name: 'b', address: '10.0.0.2:1' }, network: { subnet: '10.244.2.0/24' } })];
      },
    }, 1, ac.signal);
    await done;
    assert.equal(calls, 5);
    assert.deepEqual(ops.routes.map((r) => r.dst), ['10.244.2.0/24']);
    assert.ok(added - removed <= 1, `listeners left: ${added - removed}`);
  });
});
