/**
 * Per-service traffic figures end to end: a real controller, etcd, NATS,
 * registry and three `berth agent --network cni` processes, each with its
 * node network in its own namespace host. A workload with two replicas on
 * two nodes, a client container on the third node fetching through the
 * service's virtual IP and its name in a loop: every replica's node counts
 * the requests in its `ip berth_traffic` table and publishes them on NATS,
 * and `berth get services` / `berth describe service` show them per endpoint;
 * when the client stops they fall back to 0. The hosts have no default route,
 * and the egress guard covers the cluster and service ranges.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tailLog, tryRunIn, waitFor, type ManagedProcess, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startNetCluster, type TestCluster } from './cluster.js';

// Ranges of this file only: another test run's egress guard drops its ranges on every bridge but its own.
const CLUSTER = '10.236.0.0/16';
const SERVICES = '10.86.0.0/16';

interface EndpointJson {
  containerId: string;
  containerName: string;
  node: string;
  address: string;
  ready?: boolean;
  requestsPerSecond?: number;
  connectionsPerSecond?: number;
  openConnections?: number;
}

interface ServiceJson {
  name: string;
  virtualIp?: string;
  endpoints?: EndpointJson[];
}

describe('traffic figures end to end (requests per replica on three namespace-host nodes)', function () {
  this.timeout(300_000);
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';
  let image = '';
  const agents: ManagedProcess[] = [];

  before(async () => {
    const net = await startNetCluster({ nodes: 3, clusterCidr: CLUSTER, serviceCidr: SERVICES });
    ({ reg, hosts, cluster } = net);
    image = net.image;
    agents.push(...net.agents);
    dir = mkdtempSync(join(tmpdir(), 'berth-test-traffic-e2e-'));
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

  it('shows requests per second for both replicas while a client on a third node loops through the VIP and the name, and 0 after it stops', async () => {
    const file = join(dir, 'web.yaml');
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  replicas: 2',
      `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo "I am $(hostname)" > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www\']',
      '  ports:', '    - { name: http, container: 80 }',
      '  placement: { maxPerNode: 1 }', '',
    ].join('\n'));
    const applied = await cli(['apply', '-f', file]);
    assert.equal(applied.code, 0, applied.stderr);
    let web: ServiceJson | undefined;
    await waitFor('service web with two ready endpoints', async () => {
      web = await service('web');
      return (web?.endpoints ?? []).filter((e) => e.ready).length === 2;
    }, 120_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\nlast: ${JSON.stringify(web)}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`);
    });
    const vip = web?.virtualIp ?? '';
    assert.match(vip, /^10\.86\.\d+\.\d+$/);
    const replicaNodes = new Set((web?.endpoints ?? []).map((e) => e.node));
    assert.equal(replicaNodes.size, 2);
    const clientNode = ['node-0', 'node-1', 'node-2'].find((n) => !replicaNodes.has(n))!;

    // Each replica's node has its own traffic table with counters for its local replica only.
    for (const [i, h] of hosts!.hosts.entries()) {
      const local = (web?.endpoints ?? []).filter((e) => e.node === `node-${i}`);
      await waitFor(`node-${i}'s traffic table`, async () => {
        const t = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', 'berth_traffic']);
        return t.code === 0 && local.every((e) => t.stdout.includes(`ip daddr ${e.address} tcp dport 80 ct state new counter name "c_${e.containerId}_80_tcp"`)) && (t.stdout.match(/ct state new/g) ?? []).length === local.length * 2;
      }, 20_000, 250);
    }

    // The client: through the VIP and the name, about 10 requests a second, until it is removed.
    const loop = `while true; do timeout 5 wget -q -O /dev/null http://${vip}/ && echo OK || echo FAIL; timeout 5 wget -q -O /dev/null http://web/ && echo OK || echo FAIL; sleep 0.2; done`;
    const started = await cli(['run', '-d', '--name', 'client', '--node', clientNode, image, 'sh', '-c', loop]);
    assert.equal(started.code, 0, started.stderr + started.stdout);

    let last: ServiceJson | undefined;
    await waitFor('requests per second > 0 for both endpoints', async () => {
      last = await service('web');
      return (last?.endpoints ?? []).length === 2 && (last?.endpoints ?? []).every((e) => (e.requestsPerSecond ?? 0) > 0 && (e.connectionsPerSecond ?? 0) > 0);
    }, 60_000, 500).catch(async (err: Error) => {
      const ci = Number(clientNode.slice(5));
      const dbg: string[] = [];
      if (process.env.TRAFFIC_DEBUG) {
        for (const [i, h] of hosts!.hosts.entries()) {
          dbg.push(`== node-${i} ruleset`, (await tryRunIn(h.netns, 'nft', ['list', 'ruleset'])).stdout, (await tryRunIn(h.netns, 'ip', ['route'])).stdout);
        }
        for (const e of last?.endpoints ?? []) dbg.push(`== wget ${e.address} from client node`, JSON.stringify(await tryRunIn(hosts!.hosts[ci]!.netns, 'timeout', ['5', 'busybox', 'wget', '-q', '-O-', `http://${e.address}/`])));
        dbg.push(`== wget vip from client node`, JSON.stringify(await tryRunIn(hosts!.hosts[ci]!.netns, 'timeout', ['5', 'busybox', 'wget', '-q', '-O-', `http://${vip}/`])));
      }
      throw new Error(`${err.message}\nlast: ${JSON.stringify(last)}\nclient: ${(await cli(['logs', 'client'])).stdout.slice(-500)}\n${dbg.join('\n')}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`);
    });
    const logs = (await cli(['logs', 'client'])).stdout;
    assert.match(logs, /^OK$/m, 'the client reaches the service');
    if (process.env.TRAFFIC_DEBUG) {
      await new Promise((r) => setTimeout(r, 10_000));
      const l1 = (await cli(['logs', 'client'])).stdout;
      const okBefore = (logs.match(/^OK$/gm) ?? []).length;
      process.stderr.write(`client OK/s over 10 s: ${((l1.match(/^OK$/gm) ?? []).length - okBefore) / 10}; figures: ${JSON.stringify((await service('web'))?.endpoints)}\n`);
    }

    const row = (await cli(['get', 'services'])).stdout.split('\n').find((l) => l.startsWith('web '));
    const cells = (row ?? '').trim().split(/\s+/);
    assert.equal(cells.length, 7, `NAME VIP PORTS ENDPOINTS REQ/S CONN/S OPEN: ${row}`);
    assert.ok(Number(cells[4]) > 0, `REQ/S total in ${row}`);
    const described = await cli(['describe', 'service', 'web']);
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, /^Traffic:\s+[\d.]+ requests\/s, [\d.]+ new connections\/s, \d+ open connections$/m);
    for (const e of last?.endpoints ?? []) {
      const line = described.stdout.split('\n').find((l) => l.includes(e.containerName)) ?? '';
      const m = new RegExp(`${e.containerName}\\s+${e.node}\\s+${e.address.replace(/\./g, '\\.')}\\s+running\\s+-\\s+yes\\s+([\\d.]+)\\s+([\\d.]+)\\s+(\\d+)$`).exec(line);
      assert.ok(m, `describe shows the rates of ${e.containerName}: ${described.stdout}`);
      assert.ok(Number(m[1]) > 0, `requests/s of ${e.containerName} in describe: ${line}`);
    }

    // The client stops: the figures go back to 0.
    const removed = await cli(['rm', '-f', 'client']);
    assert.equal(removed.code, 0, removed.stderr);
    await waitFor('requests per second back to 0 on both endpoints', async () => {
      last = await service('web');
      return (last?.endpoints ?? []).length === 2 && (last?.endpoints ?? []).every((e) => (e.requestsPerSecond ?? 0) === 0 && (e.connectionsPerSecond ?? 0) === 0);
    }, 30_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\nlast: ${JSON.stringify(last)}`);
    });

    assert.equal((await cli(['delete', 'workload', 'web'])).code, 0);
    await waitFor('service web to be gone', async () => (await service('web')) === undefined, 30_000, 500);
  });
});
