/**
 * Connection draining end to end: a real controller, etcd, NATS, registry and
 * three `berth agent --network cni` processes, each with its node network in
 * its own namespace host (no default route, egress guard on the cluster and
 * service ranges). A client container on one node makes a NEW connection per
 * request to the service's virtual IP (and every fourth one to its name
 * through the node resolver) with busybox wget bounded by `timeout`, printing
 * `OK <page>` or `FAIL <why>` per request. Under that steady load the
 * workload is rolled out to a new revision (every replica replaced) and then
 * scaled from 3 to 1; the replaced and removed replicas drain (out of every
 * node's service table, still running) before their stop signal, so not one
 * request may fail, and the answers must come from old and new replicas.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor, type ManagedProcess, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startNetCluster, type TestCluster } from './cluster.js';

// Ranges of this run only: other test runs' egress guards (in the root namespace, where every run's host bridge lives)
// drop bridged packets of their own ranges (the default 10.244.0.0/16 and 10.96.0.0/16) on any bridge but theirs.
const PICK = Math.floor(Math.random() * 30);
const CLUSTER = `10.${160 + PICK}.0.0/16`;
const SERVICES = `10.${120 + PICK}.0.0/16`;

interface ServiceJson {
  name: string;
  virtualIp?: string;
  endpoints?: { containerName: string; node: string; address: string; ready?: boolean; draining?: boolean }[];
}

interface ReplicaJson {
  name: string;
  revision: string | number;
  desiredState?: string;
  status?: { state?: string; draining?: boolean };
}

describe('rolling update and scale down under load (connection draining on three namespace-host nodes)', function () {
  this.timeout(600_000);
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
    dir = mkdtempSync(join(tmpdir(), 'berth-test-rollout-load-'));
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

  async function services(): Promise<ServiceJson[]> {
    const r = await cli(['get', 'services', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ServiceJson[];
  }

  async function replicas(): Promise<ReplicaJson[]> {
    const r = await cli(['get', 'replicas', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as ReplicaJson[]).filter((x) => x.name.startsWith('web-'));
  }

  function workload(version: string): string {
    const path = join(dir, `web-${version}.yaml`);
    writeFileSync(path, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  replicas: 3',
      `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo "$(hostname) v$VERSION" > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www\']',
      '  env:', `    VERSION: "${version}"`,
      '  ports:', '    - { name: http, container: 80 }',
      // Ready once httpd answers (not merely once the process runs). An exec check: tcp and http checks connect from
      // the agent's own network namespace, which cannot reach containers whose node network is in a namespace host.
      '  health:', '    exec: [wget, -q, -O, /dev/null, "http://127.0.0.1/"]', '    intervalSeconds: 1', '    timeoutSeconds: 2', '    failureThreshold: 3', '',
    ].join('\n'));
    return path;
  }

  /** Waits until exactly `count` replicas of `version` run, none draining, and no other replica is left. */
  async function settled(count: number, version: string): Promise<void> {
    let last: ReplicaJson[] = [];
    await waitFor(`${count} replicas of v${version} and nothing else`, async () => {
      last = await replicas();
      return last.length === count && last.every((r) => r.status?.state === 'CONTAINER_STATE_RUNNING' && !r.status.draining && r.desiredState !== 'CONTAINER_STATE_REMOVED');
    }, 120_000, 500).catch((err: Error) => assert.fail(`${err.message}\n${JSON.stringify(last)}`));
  }

  it('serves every request of a client making a new connection per request while the workload rolls out a new revision and scales from 3 to 1', async () => {
    assert.equal((await cli(['apply', '-f', workload('1')])).code, 0);
    const first = await cli(['rollout', 'status', 'web', '--timeout', '180s']);
    assert.equal(first.code, 0, `${first.stdout}${first.stderr}`);
    let web: ServiceJson | undefined;
    await waitFor('service web with three ready endpoints', async () => {
      web = (await services()).find((s) => s.name === 'web');
      return (web?.endpoints ?? []).filter((e) => e.ready).length === 3;
    }, 60_000, 500).catch((err: Error) => assert.fail(`${err.message}\nlast: ${JSON.stringify(web)}`));
    const vip = web?.virtualIp ?? '';
    assert.match(vip, new RegExp(`^10\\.${120 + PICK}\\.\\d+\\.\\d+$`));
    const v1 = new Set((web?.endpoints ?? []).map((e) => e.containerName));

    // The client: one new connection per request; a request that fails or hangs past 5 s prints FAIL.
    const loop = [
      'n=0; while true; do n=$((n+1))',
      `if [ $((n % 4)) -eq 0 ]; then url=http://web.berth/; else url=http://${vip}/; fi`,
      'if out=$(timeout 5 wget -q -O - "$url" 2>&1); then echo "OK $n $out"; else echo "FAIL $n rc=$? $url $(echo $out)"; fi',
      'done',
    ].join('; ');
    const started = await cli(['run', '-d', '--name', 'client', '--node', 'node-0', image, 'sh', '-c', loop]);
    assert.equal(started.code, 0, started.stderr);

    // Watches the service while the load runs: replicas that leave the rotation show as draining endpoints.
    const drainingSeen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const s = (await services().catch(() => [])).find((x) => x.name === 'web');
        for (const e of s?.endpoints ?? []) if (e.draining) drainingSeen.add(e.containerName);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    let lastLog = '';
    const okLines = async (): Promise<number> => {
      const r = await cli(['logs', 'client']);
      lastLog = `${r.stdout}${r.stderr}`;
      return (r.stdout.match(/^OK /gm) ?? []).length;
    };
    const withLog = (err: Error): never => assert.fail(`${err.message}\nclient log (end):\n${lastLog.slice(-3000)}`);
    try {
      // Load is flowing before anything changes.
      await waitFor('the client to get 50 answers', async () => (await okLines()) >= 50, 60_000, 500).catch(withLog);

      // A new revision: every replica is replaced (start new, wait ready, drain old, stop old).
      assert.equal((await cli(['apply', '-f', workload('2')])).code, 0);
      const rolled = await cli(['rollout', 'status', 'web', '--timeout', '240s']);
      assert.equal(rolled.code, 0, `${rolled.stdout}${rolled.stderr}`);
      await settled(3, '2');
      const afterRollout = await okLines();

      // Scale down under the same load: the two removed replicas drain first.
      const scaled = await cli(['scale', 'web', '--replicas', '1']);
      assert.equal(scaled.code, 0, scaled.stderr);
      await settled(1, '2');
      await waitFor('the client to get 50 more answers after the scale down', async () => (await okLines()) >= afterRollout + 50, 60_000, 500).catch(withLog);
    } finally {
      watching = false;
      await watcher;
    }
    const logs = await cli(['logs', 'client']);
    const removed = await cli(['rm', '-f', 'client']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(removed.code, 0, removed.stderr);
    const lines = logs.stdout.split('\n').filter((l) => l !== '');
    const fails = lines.filter((l) => !l.startsWith('OK '));
    const oks = lines.filter((l) => l.startsWith('OK '));
    assert.deepEqual(fails, [], `${fails.length} of ${lines.length} requests failed:\n${fails.slice(0, 20).join('\n')}`);
    // Answers came from every old replica and from new ones, through the address and the name.
    const answered = new Set(oks.map((l) => /^OK \d+ (\S+) v\d$/.exec(l)?.[1]).filter((x): x is string => x !== undefined));
    for (const name of v1) assert.ok(answered.has(name), `old replica ${name} answered; answers from ${[...answered].join(', ')}`);
    assert.ok(oks.some((l) => / v2$/.test(l)), 'new replicas answered');
    assert.ok(oks.some((l) => /^OK (\d+) /.exec(l)?.[1] !== undefined && Number(/^OK (\d+) /.exec(l)?.[1]) % 4 === 0), 'requests to the name web.berth were answered');
    assert.ok(oks.length >= 150, `many requests were made: ${oks.length}`);
    // Every replaced or removed replica went through draining, visible as a draining endpoint.
    for (const name of v1) assert.ok(drainingSeen.has(name), `replaced replica ${name} showed as a draining endpoint; seen: ${[...drainingSeen].join(', ')}`);
  });
});
