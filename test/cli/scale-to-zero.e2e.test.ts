/**
 * Scale to zero and back, end to end: a real controller, etcd, NATS,
 * registry and two `berth agent --network cni` processes, each with its node
 * network inside its own namespace host (`--node-netns`). A busybox httpd
 * workload with `autoscale: { min: 0, scaleToZero }` (pinned to node-0 by a
 * node label) goes to zero replicas once idle (an event says why); then a
 * client container on node-1 fetches the service address: node-1's agent
 * holds the connection, the leader starts a replica ("scaled ... 0 -> 1:
 * connection held at the service address"), and the page comes back through
 * the held connection; idle again, the workload goes back to zero. The same
 * through the published port (routing mesh) on node-0's address. The hosts
 * have no default route, and the egress guard covers the cluster and
 * service ranges before any address exists.
 */
import assert from 'node:assert/strict';
import { tailLog, tryRunIn, waitFor, type ManagedProcess, type RegistryWithImages, type TestHosts } from '../harness/index.js';
import { startNetCluster, type TestCluster } from './cluster.js';

// Ranges of this file's own: concurrent test runs guard the default ranges (10.244/16, 10.96/16) in the
// root namespace, and with bridge-nf-call-iptables on there their guard drops our bridged cross-node packets.
const CLUSTER = '10.247.0.0/16';
const SERVICES = '10.98.0.0/16';
const PUBLISHED = 18080;

interface ServiceJson {
  name: string;
  virtualIp?: string;
  endpoints?: { containerName: string; node: string; address: string; ready?: boolean }[];
}
interface EventJson { reason?: string; message?: string; workload?: string }
interface WorkloadJson { metadata?: { name?: string }; spec?: { replicas?: number } }

describe('scale to zero end to end (held first connection on two namespace-host nodes)', function () {
  this.timeout(300_000);
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let image = '';
  const agents: ManagedProcess[] = [];

  before(async () => {
    const net = await startNetCluster({ nodes: 2, clusterCidr: CLUSTER, serviceCidr: SERVICES, agentArgs: (i) => ['--labels', `role=${i === 0 ? 'app' : 'client'}`] });
    ({ reg, hosts, cluster } = net);
    image = net.image;
    agents.push(...net.agents);
  });

  after(async () => {
    const problems: string[] = [];
    await cluster?.stop().catch((e: Error) => problems.push(e.message));
    await hosts?.cleanup().catch((e: Error) => problems.push(e.message));
    await reg?.stop().catch((e: Error) => problems.push(e.message));
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  /** The agents' activator, warning and error lines (for failure messages). */
  function agentLines(): string {
    return agents.map((a, i) => `node-${i}:\n${tailLog(a, 100_000).split('\n').filter((l) => /activator|"level":"(warn|error)"/.test(l)).slice(-40).join('\n')}`).join('\n');
  }

  async function cli(args: string[], options?: { stdin?: string }): Promise<{ code: number; stdout: string; stderr: string }> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args, options);
  }

  async function replicas(name: string): Promise<number> {
    const r = await cli(['get', 'workloads', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const w = (JSON.parse(r.stdout) as WorkloadJson[]).find((x) => x.metadata?.name === name);
    // JSON leaves out a zero count.
    return w ? (w.spec?.replicas ?? 0) : -1;
  }

  async function service(name: string): Promise<ServiceJson | undefined> {
    const r = await cli(['get', 'services', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as ServiceJson[]).find((s) => s.name === name);
  }

  async function scaledEvents(name: string): Promise<string[]> {
    const r = await cli(['events', '--limit', '500', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as EventJson[]).filter((e) => e.reason === 'Scaled' && e.workload === name).map((e) => e.message ?? '');
  }

  async function table(i: number): Promise<string> {
    const r = await tryRunIn(hosts!.hosts[i]!.netns, 'nft', ['list', 'table', 'ip', 'berth_svc']);
    return r.code === 0 ? r.stdout : '';
  }

  /** Waits until the workload is at zero replicas, no endpoint is left, and both nodes' tables send its port to a hold listener. */
  async function atZero(name: string): Promise<void> {
    await waitFor(`${name} to scale to zero`, async () => (await replicas(name)) === 0, 90_000, 250).catch(async (err: Error) => {
      throw new Error(`${err.message}\nevents: ${(await scaledEvents(name)).join('\n')}`);
    });
    await waitFor(`${name} to have no endpoint`, async () => ((await service(name))?.endpoints ?? []).length === 0, 60_000, 250);
    for (let i = 0; i < 2; i++) {
      await waitFor(`node-${i}'s table to hold ${name}'s port`, async () => (await table(i)).includes(`"h:${name}:80/tcp"`), 20_000, 250).catch(async (err: Error) => {
        throw new Error(`${err.message}\n${await table(i)}\n${tailLog(agents[i]!, 30)}`);
      });
    }
  }

  it('scales an idle workload to zero and serves the first request through the service address and the published port by holding it while one replica starts', async () => {
    const manifest = [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata: { name: sleepy }', 'spec:',
      '  replicas: 1',
      `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo "woke $(hostname)" > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www\']',
      `  ports: [{ name: http, container: 80, publish: ${PUBLISHED} }]`,
      '  placement: { nodeSelector: { role: app } }',
      '  autoscale:',
      '    min: 0',
      '    max: 2',
      '    metric: requests',
      '    target: 100',
      '    scaleDown: { stabilizationSeconds: 0, periodSeconds: 1 }',
      '    scaleToZero: { idleSeconds: 3 }',
      '',
    ].join('\n');
    const applied = await cli(['apply', '-f', '-'], { stdin: manifest });
    assert.equal(applied.code, 0, applied.stderr);

    // Idle from the start: one replica runs, then the autoscaler takes it to zero.
    await atZero('sleepy');
    const down = await scaledEvents('sleepy');
    assert.ok(down.some((m) => /^scaled sleepy 1 -> 0: no requests for \d+s \(scaleToZero\.idleSeconds 3\)/.test(m)), `events: ${down.join('\n')}`);
    const vip = (await service('sleepy'))?.virtualIp ?? '';
    assert.match(vip, /^10\.98\.\d+\.\d+$/);

    // The first request: a client container on node-1 to the VIP. Held, a replica starts on node-0, the answer comes back.
    const fetch = `timeout 60 wget -q -O - http://${vip}:80/; echo "rc=$?"`;
    const first = await cli(['run', '--rm', '--node', 'node-1', image, 'sh', '-c', fetch]);
    assert.equal(first.code, 0, `client exited ${first.code}: ${first.stderr}${first.stdout}\n${agentLines()}`);
    assert.match(first.stdout, /^woke \S+$/m, `the held request got the page: ${first.stdout}\n${tailLog(agents[1]!, 30)}`);
    assert.match(first.stdout, /rc=0/);
    const up = await scaledEvents('sleepy');
    assert.ok(up.includes('scaled sleepy 0 -> 1: connection held at the service address'), `events: ${up.join('\n')}`);
    const described = await cli(['describe', 'workload', 'sleepy']);
    assert.match(described.stdout, /connection held at the service address/);

    // Idle again: back to zero.
    await atZero('sleepy');

    // The published port on node-0's address (routing mesh), from a container on node-1: held the same way.
    const node0 = hosts!.hosts[0]!.address;
    const viaPort = await cli(['run', '--rm', '--node', 'node-1', image, 'sh', '-c', `timeout 60 wget -q -O - http://${node0}:${PUBLISHED}/; echo "rc=$?"`]);
    assert.equal(viaPort.code, 0, viaPort.stderr + viaPort.stdout);
    assert.match(viaPort.stdout, /^woke \S+$/m, `the held request through the published port got the page: ${viaPort.stdout}\n${tailLog(agents[0]!, 30)}`);
    assert.equal((await scaledEvents('sleepy')).filter((m) => m === 'scaled sleepy 0 -> 1: connection held at the service address').length, 2);

    assert.equal((await cli(['delete', 'workload', 'sleepy'])).code, 0);
    for (let i = 0; i < 2; i++) await waitFor(`node-${i}'s table to drop sleepy`, async () => !(await table(i)).includes('sleepy'), 30_000, 250);
  });
});
