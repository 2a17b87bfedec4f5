/**
 * Routing mesh end to end: a real controller, etcd, NATS, registry and three
 * `berth agent --network cni` processes, each with its node network inside
 * its own namespace host (`--node-netns`). A workload publishing 8080 -> 80
 * with both replicas forced onto one node (a node selector; before the mesh
 * the second replica clashed on the host port) answers on every node's
 * address: from inside every namespace host (its own address and the
 * others') and from a client container on a node without a replica. A
 * single container may not take the port; at zero replicas the port is
 * refused; after delete the rules are gone and the port is refused on every
 * node; the agents' --cleanup removes the tables. The hosts have no default
 * route, and the egress guard covers the cluster and service ranges.
 *
 * The cluster uses its own ranges (not the defaults): with bridge netfilter
 * on in the root namespace, the hosts' bridged packets pass every test run's
 * guard chains, and a concurrent run guarding the default ranges on its own
 * bridge would drop this run's container traffic between hosts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tailLog, tryRunIn, waitFor, type ManagedProcess, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startNetCluster, type TestCluster } from './cluster.js';

const CLUSTER = '10.247.0.0/16';
const SERVICES = '10.97.0.0/16';

interface ServiceJson {
  name: string;
  ports?: { port: number; protocol: string; published?: number }[];
  endpoints?: { containerName: string; node: string; address: string; ready?: boolean }[];
}

describe('routing mesh end to end (a published port answers on every one of three namespace-host nodes)', function () {
  this.timeout(300_000);
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';
  let image = '';
  const agents: ManagedProcess[] = [];

  before(async () => {
    const net = await startNetCluster({ nodes: 3, clusterCidr: CLUSTER, serviceCidr: SERVICES, agentArgs: (i) => ['--labels', `slot=s${i}`] });
    ({ reg, hosts, cluster } = net);
    image = net.image;
    agents.push(...net.agents);
    dir = mkdtempSync(join(tmpdir(), 'berth-test-mesh-e2e-'));
  });

  after(async () => {
    const problems: string[] = [];
    await cluster?.stop().catch((e: Error) => problems.push(e.message));
    await hosts?.cleanup().catch((e: Error) => problems.push(e.message));
    await reg?.stop().catch((e: Error) => problems.push(e.message));
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  }

  async function service(name: string): Promise<ServiceJson | undefined> {
    const r = await cli(['get', 'services', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as ServiceJson[]).find((s) => s.name === name);
  }

  async function table(i: number, name = 'berth_svc'): Promise<string> {
    const r = await tryRunIn(hosts!.hosts[i]!.netns, 'nft', ['list', 'table', 'ip', name]);
    return r.code === 0 ? r.stdout : '';
  }

  /** GET http://ADDRESS:8080/ from inside namespace host `from` (curl exit 0 and the page, or its exit code: 7 = refused). */
  async function fetchFrom(from: number, address: string): Promise<{ code: number; body: string }> {
    const r = await tryRunIn(hosts!.hosts[from]!.netns, 'curl', ['-s', '--max-time', '5', `http://${address}:8080/`]);
    return { code: r.code, body: r.stdout.trim() };
  }

  function webFile(replicas: number): string {
    const file = join(dir, `web-${replicas}.yaml`);
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', `  replicas: ${replicas}`,
      `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo "I am $(hostname)" > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www\']',
      '  ports:', '    - { name: http, container: 80, publish: 8080 }',
      // Both replicas on node-2: two replicas publishing one host port on one node, and two nodes without a replica.
      '  placement: { nodeSelector: { slot: s2 } }', '',
    ].join('\n'));
    return file;
  }

  it('answers on every node with a replica\'s page, from every namespace host and from a container on a node without a replica', async () => {
    const applied = await cli(['apply', '-f', webFile(2)]);
    assert.equal(applied.code, 0, applied.stderr);
    let web: ServiceJson | undefined;
    await waitFor('service web with two ready endpoints', async () => {
      web = await service('web');
      return (web?.endpoints ?? []).filter((e) => e.ready).length === 2;
    }, 120_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\nlast: ${JSON.stringify(web)}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`);
    });
    assert.deepEqual((web?.endpoints ?? []).map((e) => e.node), ['node-2', 'node-2'], 'both replicas run on node-2');
    assert.equal(web?.ports?.[0]?.published, 8080);
    const names = (web?.endpoints ?? []).map((e) => e.containerName).sort();
    const addrs = (web?.endpoints ?? []).map((e) => e.address).sort();

    // Every node's table has the mesh rule over both endpoints, and node-2's `ip berth` has no per-container DNAT for them.
    for (let i = 0; i < 3; i++) {
      await waitFor(`node-${i}'s table to publish 8080 over both endpoints`, async () => {
        const t = await table(i);
        return t.includes(`tcp dport 8080 meta mark set meta mark | 0x00b40000 dnat to numgen random mod 2 map { 0 : ${addrs[0]}, 1 : ${addrs[1]} }:80 comment "p:web:8080/tcp"`);
      }, 20_000, 250);
    }
    assert.doesNotMatch(await table(2, 'berth'), /dport 8080/);

    // From inside every namespace host to every node's address (the node's own address goes through the output chain).
    const all = hosts!.hosts;
    for (const [from] of all.entries()) {
      for (const to of all) {
        const seen = new Set<string>();
        for (let k = 0; k < 12; k++) {
          const r = await fetchFrom(from, to.address);
          assert.equal(r.code, 0, `host-${from} -> ${to.address}:8080: curl exit ${r.code}`);
          assert.match(r.body, /^I am \S+$/);
          seen.add(r.body.slice('I am '.length));
        }
        assert.ok([...seen].every((s) => names.includes(s)), `answers from replicas only: ${[...seen].join(', ')}`);
      }
    }

    // A client container on node-0 (no replica) reaches node-1's address (no replica either) and node-2's; both replicas answer.
    const script = all.slice(1).map((h) => `ok=0; for i in $(seq 1 20); do if timeout 5 wget -q -O - http://${h.address}:8080/; then ok=$((ok+1)); else echo "fail rc=$? $(date +%s.%N)"; fi; done; echo "ok ${h.address}=$ok"`).join('; ');
    const r = await cli(['run', '--rm', '--node', 'node-0', image, 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    for (const h of all.slice(1)) assert.match(r.stdout, new RegExp(`ok ${h.address.replace(/\./g, '\\.')}=20`), r.stdout);
    assert.deepEqual([...new Set([...r.stdout.matchAll(/^I am (\S+)$/gm)].map((m) => m[1]))].sort(), names, r.stdout);

    // A client container on node-2 (the replicas' node) through its own node's address: hairpin.
    const local = await cli(['run', '--rm', '--node', 'node-2', image, 'sh', '-c', `timeout 5 wget -q -O - http://${all[2]!.address}:8080/`]);
    assert.equal(local.code, 0, local.stderr + local.stdout);
    assert.match(local.stdout, /^I am \S+$/m);
  });

  it('refuses a single container the mesh\'s port on a node, and another workload publishing it, naming the workload', async () => {
    await waitFor('node-1 to know the mesh port', async () => (await table(1)).includes('p:web:8080/tcp'), 20_000, 250);
    const run = await cli(['run', '-d', '--node', 'node-1', '-p', '8080:80', image, 'sleep', '60']);
    assert.notEqual(run.code, 0, run.stdout);
    assert.match(run.stderr, /host port 8080\/tcp is published on every node by workload "web"/);
    const file = join(dir, 'other.yaml');
    writeFileSync(file, ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: other', 'spec:', '  replicas: 1', `  image: ${image}`, '  command: [sleep, "60"]',
      '  ports:', '    - { container: 81, publish: 8080 }', ''].join('\n'));
    const applied = await cli(['apply', '-f', file]);
    assert.notEqual(applied.code, 0);
    assert.match(applied.stderr, /spec\.ports\[0\]\.publish: workload "other" cannot publish host port 8080\/tcp: workload "web" already publishes it/);
    const listed = await cli(['get', 'workloads', '-o', 'json']);
    assert.doesNotMatch(listed.stdout, /"other"/);
  });

  it('refuses the port on every node at zero replicas, and after delete has no rules left and the port refused everywhere', async () => {
    assert.equal((await cli(['scale', 'web', '--replicas', '0'])).code, 0);
    for (let i = 0; i < 3; i++) {
      await waitFor(`node-${i}'s table to reject 8080 without endpoints`, async () => {
        const t = await table(i);
        return !t.includes('p:web:8080/tcp') && t.includes('tcp dport 8080 ct status ! dnat reject with tcp reset comment "r:web:8080/tcp"');
      }, 60_000, 250);
    }
    for (const [from] of hosts!.hosts.entries()) {
      for (const to of hosts!.hosts) assert.equal((await fetchFrom(from, to.address)).code, 7, `host-${from} -> ${to.address}:8080 is refused (curl exit 7)`);
    }
    assert.equal((await cli(['delete', 'workload', 'web'])).code, 0);
    for (let i = 0; i < 3; i++) {
      await waitFor(`node-${i}'s table to drop web`, async () => {
        const t = await table(i);
        return t !== '' && !t.includes('8080') && !t.includes('web');
      }, 30_000, 250);
    }
    for (const [from] of hosts!.hosts.entries()) {
      for (const to of hosts!.hosts) assert.equal((await fetchFrom(from, to.address)).code, 7, `host-${from} -> ${to.address}:8080 is refused after delete`);
    }
  });

  // Last: it stops the agents.
  it('leaves no service or port table behind when the agents stop with --cleanup', async () => {
    for (const a of agents) await a.stop();
    for (let i = 0; i < 3; i++) {
      assert.equal(await table(i), '', `node-${i} has no ip berth_svc`);
      assert.equal(await table(i, 'berth'), '', `node-${i} has no ip berth`);
    }
  });
});
