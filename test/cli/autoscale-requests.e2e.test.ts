/**
 * Autoscaling on requests end to end (issue 8): a real controller, etcd,
 * NATS, registry and two `berth agent --network cni` processes with their
 * node networks in namespace hosts (no default route, egress guard on this
 * file's own cluster and service ranges). A workload with
 * `autoscale: { metric: requests }` and a client container making a new
 * connection per request through the service's virtual IP (and every fourth
 * one through its name), printing OK or FAIL per request: the replicas'
 * nodes count the requests (`ip berth_traffic`), report them per replica
 * every second, and the leader scales the workload up with an event naming
 * the request rate; not one request fails meanwhile. Once the client stops,
 * the workload comes back to its minimum.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tailLog, waitFor, type ManagedProcess, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startNetCluster, type TestCluster } from './cluster.js';

// Ranges of this file only: another test run's egress guard drops its ranges on every bridge but its own.
const CLUSTER = '10.237.0.0/16';
const SERVICES = '10.87.0.0/16';

interface WorkloadJson { metadata?: { name?: string }; spec?: { replicas?: number } }
interface EventJson { reason?: string; message?: string }
interface ServiceJson { name: string; virtualIp?: string; endpoints?: { ready?: boolean; requestsPerSecond?: number }[] }

describe('autoscaling on requests end to end (two namespace-host nodes, a client through the service address)', function () {
  this.timeout(400_000);
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';
  let image = '';
  const agents: ManagedProcess[] = [];

  before(async () => {
    const net = await startNetCluster({ nodes: 2, clusterCidr: CLUSTER, serviceCidr: SERVICES });
    ({ reg, hosts, cluster } = net);
    image = net.image;
    agents.push(...net.agents);
    dir = mkdtempSync(join(tmpdir(), 'berth-test-autoscale-requests-'));
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

  async function replicas(): Promise<number> {
    const r = await cli(['get', 'workloads', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as WorkloadJson[]).find((w) => w.metadata?.name === 'web')?.spec?.replicas ?? -1;
  }

  async function scaledEvents(): Promise<string[]> {
    const r = await cli(['events', '--limit', '200', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as EventJson[]).filter((e) => e.reason === 'Scaled').map((e) => e.message ?? '');
  }

  it('scales up under a steady request load without a failed request, and back to min once the load stops', async () => {
    const file = join(dir, 'web.yaml');
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:',
      `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo "$(hostname)" > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www\']',
      '  ports:', '    - { name: http, container: 80 }',
      // Ready once httpd answers, so a new replica joins the service only when it serves.
      '  health:', '    exec: [wget, -q, -O, /dev/null, "http://127.0.0.1/"]', '    intervalSeconds: 1', '    timeoutSeconds: 2', '    failureThreshold: 3',
      '  autoscale:', '    min: 1', '    max: 6', '    metric: requests', '    target: 2',
      '    scaleDown: { stabilizationSeconds: 5, periodSeconds: 5 }', '',
    ].join('\n'));
    const applied = await cli(['apply', '-f', file]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(await replicas(), 1);
    let web: ServiceJson | undefined;
    await waitFor('service web with a ready endpoint', async () => {
      const r = await cli(['get', 'services', '-o', 'json']);
      web = (JSON.parse(r.stdout) as ServiceJson[]).find((s) => s.name === 'web');
      return (web?.endpoints ?? []).some((e) => e.ready);
    }, 120_000, 500).catch((err: Error) => assert.fail(`${err.message}\nlast: ${JSON.stringify(web)}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`));
    const vip = web?.virtualIp ?? '';
    assert.match(vip, /^10\.87\.\d+\.\d+$/);

    // The client: a new connection per request, about 5 or more a second; a request that fails or hangs past 5 s prints FAIL.
    const loop = [
      'n=0; while true; do n=$((n+1))',
      `if [ $((n % 4)) -eq 0 ]; then url=http://web.berth/; else url=http://${vip}/; fi`,
      'if out=$(timeout 5 wget -q -O - "$url" 2>&1); then echo "OK $n $out"; else echo "FAIL $n rc=$? $url $(echo $out)"; fi',
      'sleep 0.1; done',
    ].join('; ');
    const started = await cli(['run', '-d', '--name', 'client', '--node', 'node-0', image, 'sh', '-c', loop]);
    assert.equal(started.code, 0, started.stderr);

    await waitFor('the autoscaler to add replicas (at least 3)', async () => (await replicas()) >= 3, 120_000, 500).catch(async (err: Error) => {
      assert.fail(`${err.message}\nevents: ${JSON.stringify(await scaledEvents())}\nservice: ${(await cli(['get', 'services', '-o', 'json'])).stdout}\nclient: ${(await cli(['logs', 'client'])).stdout.slice(-600)}`);
    });
    const up = (await scaledEvents()).find((m) => /^scaled web 1 -> /.test(m)) ?? '';
    assert.match(up, /^scaled web 1 -> [2-6]: requests [\d.]+\/s over 1 ready replica, target 2\/s/, `first scale-up event: ${up}`);
    // The new replicas join the service and take requests too.
    await waitFor('three ready endpoints taking requests', async () => {
      const r = await cli(['get', 'services', '-o', 'json']);
      const s = (JSON.parse(r.stdout) as ServiceJson[]).find((x) => x.name === 'web');
      return (s?.endpoints ?? []).filter((e) => e.ready && (e.requestsPerSecond ?? 0) > 0).length >= 3;
    }, 60_000, 500);

    // Stop the client and check every one of its requests while the workload scaled.
    assert.equal((await cli(['stop', 'client'])).code, 0);
    const logs = (await cli(['logs', 'client'])).stdout;
    const oks = (logs.match(/^OK /gm) ?? []).length;
    const fails = logs.split('\n').filter((l) => l.startsWith('FAIL '));
    assert.ok(oks > 20, `the client made requests: ${logs.slice(-400)}`);
    assert.deepEqual(fails, [], `${fails.length} of ${oks + fails.length} requests failed`);

    await waitFor('the autoscaler to come back to min (1)', async () => (await replicas()) === 1, 180_000, 1000).catch(async (err: Error) => {
      assert.fail(`${err.message}\nevents: ${JSON.stringify(await scaledEvents())}`);
    });
    assert.ok((await scaledEvents()).some((m) => /^scaled web [2-6] -> [1-5]: requests [\d.]+\/s/.test(m)), 'a scale-down event names the request rate');

    assert.equal((await cli(['rm', 'client'])).code, 0);
    assert.equal((await cli(['delete', 'workload', 'web'])).code, 0);
  });
});
