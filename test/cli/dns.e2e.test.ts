/**
 * Service names end to end: a real controller, etcd, NATS, registry and two
 * `berth agent --network cni --dns-upstream none` processes, each with its
 * node network inside its own namespace host. A probe container started
 * before the workload exists asks the node resolver (its nameserver, the
 * bridge gateway) for `web.berth` until it answers; the answer is the
 * workload's virtual IP and comes within 2 s of `berth apply` returning
 * (the bound; both sides read the same /proc/uptime clock). The
 * short name `web` resolves through `search berth`; `nope.berth` gets
 * NXDOMAIN. The resolvers forward nothing (`--dns-upstream none`), the hosts
 * have no default route and the egress guard covers the cluster and service
 * ranges.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tailLog, waitFor, type ManagedProcess } from '../harness/index.js';
import { startNetCluster, type NetCluster, type TestCluster } from './cluster.js';

const CLUSTER = '10.244.0.0/16';
const SERVICES = '10.96.0.0/16';

function uptime(): number {
  return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

describe('service names end to end (the node resolver on two namespace-host nodes)', function () {
  this.timeout(300_000);
  let net: NetCluster | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';
  let image = '';
  let agents: ManagedProcess[] = [];

  before(async () => {
    net = await startNetCluster({ nodes: 2, clusterCidr: CLUSTER, serviceCidr: SERVICES, agentArgs: () => ['--dns-upstream', 'none'] });
    ({ cluster, agents, image } = net);
    dir = mkdtempSync(join(tmpdir(), 'berth-test-dns-e2e-'));
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

  it('resolves a new workload\'s name to its virtual IP in a container within 2 s of apply and NXDOMAIN for unknown .berth names', async () => {
    // The probe: waits for web.berth (0.1 s between tries), then asks for the short name and an unknown one.
    const probe = [
      'cat /etc/resolv.conf',
      'for i in $(seq 1 1200); do if nslookup -type=a web.berth > /tmp/o 2>&1 && grep -q "^Address: 10\\.96\\." /tmp/o; then echo "resolved-at $(cut -d" " -f1 /proc/uptime)"; cat /tmp/o; break; fi; sleep 0.1; done',
      'echo "== short"; nslookup -type=a web; echo "rc=$?"',
      'echo "== nope"; nslookup -type=a nope.berth; echo "rc=$?"',
      'echo probe-done; sleep 600',
    ].join('; ');
    const started = await cli(['run', '-d', '--name', 'probe', '--node', 'node-0', image, 'sh', '-c', probe]);
    assert.equal(started.code, 0, started.stderr + started.stdout);
    await waitFor('the probe to ask its resolver', async () => (await cli(['logs', 'probe'])).stdout.includes('search berth'), 60_000, 300);

    const file = join(dir, 'web.yaml');
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  replicas: 1',
      `  image: ${image}`, '  command: [httpd, -f, -p, "80"]',
      '  ports:', '    - { name: http, container: 80 }', '',
    ].join('\n'));
    const applied = await cli(['apply', '-f', file]);
    const appliedAt = uptime();
    assert.equal(applied.code, 0, applied.stderr);

    let logs = '';
    await waitFor('the probe to finish', async () => {
      logs = (await cli(['logs', 'probe'])).stdout;
      return logs.includes('probe-done');
    }, 60_000, 300).catch((err: Error) => {
      throw new Error(`${err.message}\n${logs}\n${agents.map((a) => tailLog(a, 20)).join('\n')}`);
    });
    const svc = await cli(['get', 'services', '-o', 'json']);
    assert.equal(svc.code, 0, svc.stderr);
    const vip = (JSON.parse(svc.stdout) as { name: string; virtualIp?: string }[]).find((s) => s.name === 'web')?.virtualIp ?? '';
    assert.match(vip, /^10\.96\.\d+\.\d+$/);

    assert.match(logs, /^nameserver 10\.244\.\d+\.1$/m, logs);
    const resolvedAt = Number(/^resolved-at (\S+)$/m.exec(logs)?.[1]);
    assert.ok(Number.isFinite(resolvedAt), `the probe never resolved web.berth:\n${logs}`);
    assert.match(logs.split('== short')[0] ?? '', new RegExp(`^Address: ${vip.replace(/\./g, '\\.')}$`, 'm'), logs);
    // Upper bound demanded by the issue: a new service resolves within 2 s of apply.
    assert.ok(resolvedAt - appliedAt <= 2, `web.berth resolved ${(resolvedAt - appliedAt).toFixed(2)} s after apply returned`);

    const short = logs.split('== short')[1]?.split('== nope')[0] ?? '';
    assert.match(short, new RegExp(`^Address: ${vip.replace(/\./g, '\\.')}$`, 'm'), logs);
    const nope = logs.split('== nope')[1] ?? '';
    assert.match(nope, /NXDOMAIN/, logs);
    assert.match(nope, /rc=1/, logs);
  });
});
