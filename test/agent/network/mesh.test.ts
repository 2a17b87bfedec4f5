/**
 * The node side of the routing mesh in NodeNetwork (agent/network/network.ts):
 * a workload's replicas publish through the mesh (ip berth_svc), so they get
 * no per-container DNAT and any number of them share a host port on a node;
 * a single container may not publish a host port the mesh uses. The kernel
 * side (nft) is recorded here; the mesh rules themselves are in
 * services.test.ts and, end to end, in test/cli/mesh.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshPortInUseError, NodeNetwork, PortInUseError, WORKLOAD_LABEL, isReplicaSpec, type MeshPorts } from '../../../agent/network/index.js';
import type { CniInvocation, NetOps } from '../../../agent/sys/index.js';
import { silentLogger } from '../../../lib/index.js';
import { ContainerSpec } from '../../../proto/gen/berth/v1/types.js';

/** Records what NodeNetwork asks of the kernel and answers like it. */
function recordingOps(): { ops: NetOps; scripts: string[] } {
  const scripts: string[] = [];
  const netns = new Set<string>();
  let next = 2;
  const impl = {
    cni: async (call: CniInvocation) => (call.plugin === 'bridge' && call.command === 'ADD' ? { ips: [{ address: `10.244.9.${next++}/24` }] } : {}),
    createNetns: async (name: string) => {
      netns.add(name);
      return `/run/netns/${name}`;
    },
    deleteNetns: async (name: string) => void netns.delete(name),
    netnsExists: (name: string) => netns.has(name),
    nftApply: async (script: string) => void scripts.push(script),
    nftListTable: async () => {
      const n = (scripts.at(-1)?.match(/ dnat to /g) ?? []).length;
      return Array.from({ length: n }, () => ({ rule: { expr: [{ dnat: {} }] } }));
    },
    nftDeleteTable: async () => undefined,
    listRoutes: async () => [],
    deleteRoute: async () => undefined,
    deleteLink: async () => undefined,
    nodeNetnsPath: () => '/proc/1/ns/net',
  };
  // Only the methods NodeNetwork calls in these tests; any other call fails loudly as "not a function".
  return { ops: impl as unknown as NetOps, scripts };
}

function spec(publish: number, protocol = 'tcp', workload = ''): ContainerSpec {
  return {
    ...ContainerSpec.fromJSON({ image: 'busybox' }),
    ports: [{ name: '', container: 80, publish, protocol }],
    labels: workload !== '' ? { [WORKLOAD_LABEL]: workload } : {},
  };
}

describe('NodeNetwork (routing mesh)', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-netmesh-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives replicas of a workload no per-container DNAT, so two replicas share a published port on one node', async () => {
    const { ops, scripts } = recordingOps();
    const net = new NodeNetwork({ ops, logger: silentLogger(), stateDir: dir, subnet: '10.244.9.0/24', clusterCidr: '10.244.0.0/16' });
    await net.start();
    assert.equal(isReplicaSpec(spec(8080, 'tcp', 'web')), true);
    assert.equal(isReplicaSpec(spec(8080)), false);
    const a = await net.setup('a', spec(8080, 'tcp', 'web'));
    const b = await net.setup('b', spec(8080, 'tcp', 'web'));
    assert.notEqual(a.ipAddress, b.ipAddress);
    assert.ok(scripts.every((s) => !s.includes('dport 8080')), scripts.join('\n---\n'));
    // The port is still checked for a replica.
    await assert.rejects(net.setup('c', spec(70000, 'tcp', 'web')), /spec\.ports\[0\]\.publish: expected a port from 1 to 65535, got 70000/);
    // A single container keeps its own DNAT and its clash check.
    await net.setup('d', spec(9090));
    await net.setup('u', spec(9090, 'udp'));
    assert.deepEqual(net.hostPorts(), ['9090/tcp', '9090/udp'], 'single containers\' ports only');
    await net.teardown('u');
    assert.match(scripts.at(-1) ?? '', /fib daddr type local tcp dport 9090 dnat to 10\.244\.9\.\d+:80 comment "c:d"/);
    await assert.rejects(net.setup('e', spec(9090)), PortInUseError);
    await net.teardown('a');
    await net.teardown('b');
    await net.teardown('d');
    assert.deepEqual(net.containers(), []);
  });

  it('refuses a single container a host port the mesh uses, naming the port and the workload, and makes nothing', async () => {
    const { ops, scripts } = recordingOps();
    const mesh: MeshPorts = { publishedBy: (port, protocol) => (port === 8080 && protocol === 'tcp' ? 'web' : undefined) };
    const net = new NodeNetwork({ ops, logger: silentLogger(), stateDir: dir, subnet: '10.244.9.0/24', clusterCidr: '10.244.0.0/16', mesh });
    await net.start();
    const before = scripts.length;
    await assert.rejects(net.setup('x', spec(8080)), (err: unknown) =>
      err instanceof MeshPortInUseError && err.workload === 'web' && err.port === 8080 &&
      err.message === 'spec.ports[0].publish: host port 8080/tcp is published on every node by workload "web" (spec.ports[].publish, routing mesh); choose another host port');
    assert.deepEqual(net.containers(), []);
    assert.equal(scripts.length, before, 'no table write');
    // The field names the port's place in spec.ports, counting ports without a host port.
    const second = { ...spec(8080), ports: [{ name: '', container: 81, publish: 0, protocol: 'tcp' }, { name: '', container: 80, publish: 8080, protocol: 'tcp' }] };
    await assert.rejects(net.setup('y', second), /^MeshPortInUseError: spec\.ports\[1\]\.publish: host port 8080\/tcp/);
    // Another protocol, another port, or the workload's own replica: fine.
    await net.setup('u', spec(8080, 'udp'));
    await net.setup('r', spec(8080, 'tcp', 'web'));
    assert.deepEqual(net.containers().sort(), ['r', 'u']);
  });
});
