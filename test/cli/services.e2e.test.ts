/**
 * Services end to end: a real controller, etcd, NATS, registry and three
 * `berth agent --network cni` processes, each with its node network inside
 * its own namespace host (`--node-netns`). A workload with ports gets a
 * virtual IP; a client container on one node reaches both replicas through
 * it (every node's `ip berth_svc` table balances over the ready endpoints on
 * all nodes); deleting the workload releases the address and empties the
 * tables. The hosts have no default route, and the egress guard covers the
 * cluster and service ranges before any address exists.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tailLog, tryRunIn, waitFor, type ManagedProcess, type TestHosts } from '../harness/index.js';
import { startNetCluster, type NetCluster, type TestCluster } from './cluster.js';

const execFileP = promisify(execFile);
const CLUSTER = '10.244.0.0/16';
const SERVICES = '10.96.0.0/16';

interface ServiceJson {
  name: string;
  virtualIp?: string;
  ports?: { port: number; protocol: string }[];
  endpoints?: { containerName: string; node: string; address: string; ready?: boolean }[];
}

describe('services end to end (virtual IPs balanced over replicas on three namespace-host nodes)', function () {
  this.timeout(300_000);
  let net: NetCluster | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';
  let image = '';
  let agents: ManagedProcess[] = [];

  before(async () => {
    net = await startNetCluster({ nodes: 3, clusterCidr: CLUSTER, serviceCidr: SERVICES });
    ({ hosts, cluster, agents, image } = net);
    dir = mkdtempSync(join(tmpdir(), 'berth-test-services-e2e-'));
  });

  after(async () => {
    const problems: string[] = [];
    await net?.cluster.stop().catch((e: Error) => problems.push(e.message));
    await net?.hosts.cleanup().catch((e: Error) => problems.push(e.message));
    await net?.reg.stop().catch((e: Error) => problems.push(e.message));
    if (dir) rmSync(dir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  }

  async function services(): Promise<ServiceJson[]> {
    const r = await cli(['get', 'services', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ServiceJson[];
  }

  async function table(i: number): Promise<string> {
    const r = await tryRunIn(hosts!.hosts[i]!.netns, 'nft', ['list', 'table', 'ip', 'berth_svc']);
    return r.code === 0 ? r.stdout : '';
  }

  it('gives a workload with ports a virtual IP and reaches both replicas through it from containers on other nodes and on a replica node, then releases it on delete', async () => {
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
      web = (await services()).find((s) => s.name === 'web');
      return (web?.endpoints ?? []).filter((e) => e.ready).length === 2;
    }, 120_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\nlast: ${JSON.stringify(web)}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`);
    });
    const vip = web?.virtualIp ?? '';
    assert.match(vip, /^10\.96\.\d+\.\d+$/);
    assert.deepEqual(web?.ports, [{ name: 'http', port: 80, protocol: 'tcp', targetPort: 80 }]);
    const names = (web?.endpoints ?? []).map((e) => e.containerName).sort();

    const row = (await cli(['get', 'services'])).stdout.split('\n').find((l) => l.startsWith('web '));
    assert.match(row ?? '', new RegExp(`^web\\s+${vip.replace(/\./g, '\\.')}\\s+80/tcp\\s+2/2\\s+[\\d.]+\\s+[\\d.]+\\s+\\d+\\s*$`));
    const described = await cli(['describe', 'service', 'web']);
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, new RegExp(`Address:\\s+${vip.replace(/\./g, '\\.')}`));
    for (const e of web?.endpoints ?? []) assert.match(described.stdout, new RegExp(`${e.containerName}\\s+${e.node}\\s+${e.address.replace(/\./g, '\\.')}\\s+running\\s+-\\s+yes`));

    // Every node's table balances the VIP over both endpoints (including nodes without a replica).
    const addrs = (web?.endpoints ?? []).map((e) => e.address).sort();
    for (let i = 0; i < 3; i++) {
      await waitFor(`node-${i}'s service table to hold both endpoints`, async () => {
        const t = await table(i);
        return t.includes(`ip daddr ${vip} tcp dport 80 dnat to numgen random mod 2 map { 0 : ${addrs[0]}, 1 : ${addrs[1]} }`);
      }, 20_000, 250);
    }

    // A client on a node without a replica when there is one, fetching through the VIP many times.
    const nodesWith = new Set((web?.endpoints ?? []).map((e) => e.node));
    const clientNode = ['node-0', 'node-1', 'node-2'].find((n) => !nodesWith.has(n)) ?? 'node-0';
    const script = `ok=0; for i in $(seq 1 40); do if timeout 5 wget -q -O - http://${vip}:80/; then ok=$((ok+1)); fi; done; echo "ok=$ok"`;
    const r = await cli(['run', '--rm', '--node', clientNode, image, 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const seen = new Set([...r.stdout.matchAll(/^I am (\S+)$/gm)].map((m) => m[1]));
    assert.deepEqual([...seen].sort(), names, `both replicas answered through ${vip}: ${r.stdout}`);
    assert.match(r.stdout, /ok=40/);

    // A client on a node that runs a replica: the local one answers through the hairpin masquerade, the remote one by route.
    const localNode = web?.endpoints?.[0]?.node ?? 'node-0';
    const local = await cli(['run', '--rm', '--node', localNode, image, 'sh', '-c', script]);
    assert.equal(local.code, 0, local.stderr + local.stdout);
    assert.deepEqual([...new Set([...local.stdout.matchAll(/^I am (\S+)$/gm)].map((m) => m[1]))].sort(), names, `both replicas answered a client on ${localNode}: ${local.stdout}`);
    assert.match(local.stdout, /ok=40/);

    // Delete: the address is released and every table drops the VIP.
    const del = await cli(['delete', 'workload', 'web']);
    assert.equal(del.code, 0, del.stderr);
    await waitFor('service web to be gone', async () => !(await services()).some((s) => s.name === 'web'), 30_000, 500);
    const keys = await execFileP('etcdctl', ['--endpoints', cluster!.etcd.url, 'get', '--prefix', '--keys-only', '/berth/v1/vip']);
    assert.equal(keys.stdout.trim(), '', `no virtual IP keys left in etcd: ${keys.stdout}`);
    for (let i = 0; i < 3; i++) {
      await waitFor(`node-${i}'s table to drop ${vip}`, async () => {
        const t = await table(i);
        return t !== '' && !t.includes(vip);
      }, 30_000, 250);
    }
  });
  it('takes a replica that fails its health check out of every node\'s table and sends traffic only to the healthy one', async () => {
    const file = join(dir, 'api.yaml');
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: api', 'spec:', '  replicas: 2',
      `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo "I am $(hostname)" > /tmp/www/index.html && touch /tmp/ok && exec httpd -f -p 8080 -h /tmp/www\']',
      '  ports:', '    - { container: 8080 }',
      '  health: { exec: [test, -e, /tmp/ok], intervalSeconds: 1, failureThreshold: 1 }',
      '  placement: { maxPerNode: 1 }', '',
    ].join('\n'));
    assert.equal((await cli(['apply', '-f', file])).code, 0);
    let api: ServiceJson | undefined;
    await waitFor('service api with two ready endpoints', async () => {
      api = (await services()).find((s) => s.name === 'api');
      return (api?.endpoints ?? []).filter((e) => e.ready).length === 2;
    }, 120_000, 500);
    const vip = api?.virtualIp ?? '';
    const [sick, well] = api?.endpoints ?? [];
    assert.ok(sick && well);
    const ex = await cli(['exec', sick.containerName, 'rm', '/tmp/ok']);
    assert.equal(ex.code, 0, ex.stderr);
    await waitFor(`${sick.containerName} to be unhealthy and left out`, async () => {
      const s = (await services()).find((x) => x.name === 'api');
      const e = s?.endpoints?.find((x) => x.containerName === sick.containerName) as { ready?: boolean; health?: string } | undefined;
      return e?.ready !== true && e?.health === 'unhealthy';
    }, 30_000, 250);
    const row = (await cli(['get', 'services'])).stdout.split('\n').find((l) => l.startsWith('api '));
    assert.match(row ?? '', /\s1\/2\s+[\d.]+\s+[\d.]+\s+\d+\s*$/);
    assert.match((await cli(['describe', 'service', 'api'])).stdout, new RegExp(`${sick.containerName}\\s+${sick.node}\\s+\\S+\\s+running\\s+unhealthy\\s+no`));
    for (let i = 0; i < 3; i++) {
      await waitFor(`node-${i}'s table to send ${vip} only to ${well.address}`, async () => (await table(i)).includes(`ip daddr ${vip} tcp dport 8080 dnat to ${well.address} comment`), 20_000, 250);
    }
    const script = `ok=0; for i in $(seq 1 20); do if timeout 5 wget -q -O - http://${vip}:8080/; then ok=$((ok+1)); fi; done; echo "ok=$ok"`;
    const r = await cli(['run', '--rm', '--node', 'node-0', image, 'sh', '-c', script]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual([...new Set([...r.stdout.matchAll(/^I am (\S+)$/gm)].map((m) => m[1]))], [well.containerName]);
    assert.match(r.stdout, /ok=20/);
    assert.equal((await cli(['delete', 'workload', 'api'])).code, 0);
  });
  // Last: it stops one node's agent for good.
  it('drops the endpoints of a node marked NotReady from the other nodes\' tables within 5 s', async () => {
    const file = join(dir, 'spread.yaml');
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: spread', 'spec:', '  replicas: 2',
      `  image: ${image}`, '  command: [httpd, -f, -p, "8081", -h, /etc]', '  ports:', '    - { container: 8081 }', '  placement: { maxPerNode: 1 }', '',
    ].join('\n'));
    assert.equal((await cli(['apply', '-f', file])).code, 0);
    let svc: ServiceJson | undefined;
    await waitFor('service spread with two ready endpoints', async () => {
      svc = (await services()).find((s) => s.name === 'spread');
      return (svc?.endpoints ?? []).filter((e) => e.ready).length === 2;
    }, 120_000, 500);
    const victim = svc!.endpoints![0]!;
    const index = Number(victim.node.replace('node-', ''));
    const others = [0, 1, 2].filter((i) => i !== index);
    for (const i of others) await waitFor(`node-${i}'s table to hold ${victim.address}`, async () => (await table(i)).includes(victim.address), 20_000, 250);
    await agents[index]!.stop();
    await waitFor(`${victim.node} to be NotReady`, async () => {
      const r = await cli(['get', 'nodes', '-o', 'json']);
      const n = (JSON.parse(r.stdout) as { spec?: { name?: string }; status?: { state?: string } }[]).find((x) => x.spec?.name === victim.node);
      return n?.status?.state === 'NODE_STATE_NOT_READY';
    }, 60_000, 200);
    // The bound: gone from every other node's table within 5 s of NotReady.
    for (const i of others) await waitFor(`node-${i}'s table to drop ${victim.address}`, async () => !(await table(i)).includes(victim.address), 5_000, 100);
    const e = (await services()).find((s) => s.name === 'spread')?.endpoints?.find((x) => x.containerName === victim.containerName);
    assert.notEqual(e?.ready, true, `${victim.containerName} on the NotReady node is not ready`);
  });
});
