/**
 * VXLAN routing end to end: a real controller, etcd, NATS, registry and three
 * `berth agent --network cni --routing vxlan` processes whose node networks
 * live in namespace hosts. host-0 is node-a, host-1 a router that is also
 * node-b, host-2 node-c: node-c is taken off the harness bridge and put
 * behind the router on a segment of its own, so only the underlay addresses
 * route between node-a and node-c and the container subnets do not. A
 * replica on node-c is reached from a container on node-a by its container
 * address (the server sees the client's own address: no NAT) and by the
 * service's virtual IP; the containers have MTU 1450; a removed node leaves
 * the others' peers; stopping the agents with --cleanup leaves no device,
 * route or FDB entry behind. The hosts have
 * no default route, and the egress guard covers the cluster and service
 * ranges and the run's host subnet (the far segment is carved from it)
 * before any address exists.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHosts, run, startRegistryWithImages, tailLog, tryRunIn, waitFor, type ManagedProcess, type RegistryWithImages, type TestHost, type TestHosts } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';
import { berth, cleanEnv } from './helpers.js';

const CLUSTER = '10.244.0.0/16';
const SERVICES = '10.96.0.0/16';
/**
 * node-c's own segment behind the router: a /30 at .200 of the run's host subnet (the harness
 * claims that subnet for this run alone and its guard covers it), routed more specifically than
 * the shared /24. Set in before().
 */
const far = { net: '', router: '', c: '' };

interface ServiceJson {
  name: string;
  virtualIp?: string;
  endpoints?: { containerName: string; node: string; address: string; ready?: boolean }[];
}

describe('vxlan routing end to end (three agents in namespace hosts; node-a and node-c share no link)', function () {
  this.timeout(300_000);
  let reg: RegistryWithImages | undefined;
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  let dir = '';
  let image = '';
  let a: TestHost;
  let r: TestHost;
  let c: TestHost;
  const agents: ManagedProcess[] = [];

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    hosts = await makeHosts(3, { guardRanges: [CLUSTER, SERVICES] });
    const [h0, h1, h2] = hosts.hosts as [TestHost, TestHost, TestHost];
    r = h1;
    const prefix = hosts.subnet.split('.').slice(0, 3).join('.');
    Object.assign(far, { net: `${prefix}.200/30`, router: `${prefix}.201`, c: `${prefix}.202` });
    a = h0;
    c = h2;
    // node-c leaves the shared bridge for a segment of its own behind the router.
    await run('ip', ['-n', c.netns, 'addr', 'flush', 'dev', 'eth0']);
    await run('ip', ['-n', c.netns, 'link', 'set', 'eth0', 'down']);
    await run('ip', ['link', 'add', 'eth1', 'netns', r.netns, 'type', 'veth', 'peer', 'name', 'eth1', 'netns', c.netns]);
    await run('ip', ['-n', r.netns, 'addr', 'add', `${far.router}/30`, 'dev', 'eth1']);
    await run('ip', ['-n', c.netns, 'addr', 'add', `${far.c}/30`, 'dev', 'eth1']);
    await run('ip', ['-n', r.netns, 'link', 'set', 'eth1', 'up']);
    await run('ip', ['-n', c.netns, 'link', 'set', 'eth1', 'up']);
    await run('ip', ['netns', 'exec', r.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await run('ip', ['-n', a.netns, 'route', 'add', far.net, 'via', r.address]);
    await run('ip', ['-n', c.netns, 'route', 'add', hosts.subnet, 'via', far.router]);

    dir = mkdtempSync(join(tmpdir(), 'berth-test-vxlan-e2e-'));
    cluster = await startCluster();
    const common = ['--network', 'cni', '--routing', 'vxlan', '--cleanup'];
    agents.push(cluster.startAgent('node-a', [...common, '--node-netns', `/run/netns/${a.netns}`, '--internal-ip', a.address]));
    agents.push(cluster.startAgent('node-b', [...common, '--node-netns', `/run/netns/${r.netns}`, '--internal-ip', r.address]));
    agents.push(cluster.startAgent('node-c', [...common, '--node-netns', `/run/netns/${c.netns}`, '--internal-ip', far.c, '--labels', 'side=far']));
    const cl = cluster;
    await waitFor('three Ready nodes', async () => {
      for (const p of agents) if (p.exited()) throw new Error(`agent exited early:\n${tailLog(p)}`);
      const res = await cl.cli(['get', 'nodes', '-o', 'json']);
      return res.code === 0 && (res.stdout.match(/NODE_STATE_READY/g) ?? []).length === 3;
    }, 60_000, 500);
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

  async function fdb(h: TestHost): Promise<string> {
    const r = await tryRunIn(h.netns, 'bridge', ['fdb', 'show', 'dev', 'berth.vx']);
    return r.code === 0 ? r.stdout : '';
  }

  it('refuses an unknown routing mode or a bad VXLAN port before starting, naming the setting and what it expects', async () => {
    const bad = await berth(['agent', '--node', 'x', '--routing', 'geneve']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim(), 'error: --routing: expected one of "host-gw", "vxlan", got "geneve"');
    const env = await berth(['agent', '--node', 'x'], { env: { ...cleanEnv(), BERTH_ROUTING: 'vxlan', BERTH_VXLAN_PORT: '0' } });
    assert.equal(env.code, 2);
    assert.equal(env.stderr.trim(), 'error: BERTH_VXLAN_PORT: expected a UDP port from 1 to 65535, got "0"');
  });

  it('reaches a replica on a node behind a router by its container address and virtual IP without NAT, and through the routing mesh, at MTU 1450', async () => {
    // Each agent programs the other as a VXLAN peer: FDB entry to its underlay address.
    await waitFor('node-a\'s FDB entry for node-c', async () => (await fdb(a)).includes(`dst ${far.c} `), 30_000, 250);
    await waitFor('node-c\'s FDB entry for node-a', async () => (await fdb(c)).includes(`dst ${a.address} `), 30_000, 250);

    const script = [
      'mkdir -p /tmp/www/cgi-bin',
      'printf "#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=\\$REMOTE_ADDR\\n" > /tmp/www/cgi-bin/addr',
      'chmod 755 /tmp/www/cgi-bin/addr',
      'exec httpd -f -p 80 -h /tmp/www',
    ].join(' && ');
    const file = join(dir, 'far.yaml');
    writeFileSync(file, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: far', 'spec:', '  replicas: 1',
      `  image: ${image}`,
      `  command: [sh, -c, ${JSON.stringify(script)}]`,
      '  ports:', '    - { name: http, container: 80, publish: 18080 }',
      '  placement: { nodeSelector: { side: far } }', '',
    ].join('\n'));
    const applied = await cli(['apply', '-f', file]);
    assert.equal(applied.code, 0, applied.stderr);

    let svc: ServiceJson | undefined;
    await waitFor('service far with a ready endpoint', async () => {
      const r = await cli(['get', 'services', '-o', 'json']);
      svc = (JSON.parse(r.stdout) as ServiceJson[]).find((s) => s.name === 'far');
      return (svc?.endpoints ?? []).some((e) => e.ready);
    }, 120_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\nlast: ${JSON.stringify(svc)}\n${agents.map((p) => tailLog(p, 20)).join('\n')}`);
    });
    const endpoint = svc!.endpoints![0]!;
    assert.equal(endpoint.node, 'node-c');
    const vip = svc?.virtualIp ?? '';
    assert.match(vip, /^10\.96\.\d+\.\d+$/);

    const fetch = (url: string) => `(for i in $(seq 1 50); do if timeout 5 wget -q -O - ${url}; then exit 0; fi; sleep 0.2; done; echo "no answer from ${url}"; exit 1)`;
    const client = [
      'echo mtu=$(cat /sys/class/net/eth0/mtu)',
      'echo self=$(ip -4 -o addr show eth0 | sed -n "s#.* inet \\([0-9.]*\\)/.*#\\1#p")',
      fetch(`http://${endpoint.address}/cgi-bin/addr`),
      `echo via-vip && ${fetch(`http://${vip}/cgi-bin/addr`)}`,
    ].join(' && ');
    const r = await cli(['run', '--rm', '--node', 'node-a', image, 'sh', '-c', client]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /^mtu=1450$/m);
    const self = /^self=(\d+\.\d+\.\d+\.\d+)$/m.exec(r.stdout)?.[1] ?? '';
    assert.match(self, /^10\.244\./, r.stdout);
    const [direct, viaVip] = r.stdout.split('via-vip');
    const peer = new RegExp(`peer=(\\[::ffff:)?${self.replace(/\./g, '\\.')}\\]?$`, 'm');
    // By container address and by virtual IP (DNAT of the destination only): the server sees the client's own address.
    assert.match(direct ?? '', peer);
    assert.match(viaVip ?? '', peer);

    // The routing mesh: node-a's published port reaches the replica on node-c over VXLAN (masqueraded to node-a's device address, per the mesh).
    let mesh = '';
    await waitFor('node-a\'s published port 18080 to answer from node-c', async () => {
      const m = await tryRunIn(a.netns, 'sh', ['-c', `timeout 5 busybox wget -q -O - http://${a.address}:18080/cgi-bin/addr`], { timeoutMs: 20_000 });
      mesh = m.stdout + m.stderr;
      return m.code === 0;
    }, 30_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}: ${mesh}`);
    });
    assert.match(mesh, /peer=(\[::ffff:)?10\.244\.\d+\.0\]?$/m);
    assert.equal((await cli(['delete', 'workload', 'far'])).code, 0);
  });

  it('drops a removed node from the other nodes\' VXLAN peers', async () => {
    // node-b runs on the router host: node-a reaches its underlay directly, node-c through the router.
    await waitFor('node-a\'s FDB entry for node-b', async () => (await fdb(a)).includes(`dst ${r.address} `), 30_000, 250);
    await waitFor('node-c\'s FDB entry for node-b', async () => (await fdb(c)).includes(`dst ${r.address} `), 30_000, 250);
    await agents[1]!.stop();
    const rm = await cli(['node', 'rm', '-f', 'node-b']);
    assert.equal(rm.code, 0, rm.stderr);
    for (const h of [a, c]) {
      await waitFor(`${h.netns} to drop node-b's FDB entry`, async () => !(await fdb(h)).includes(`dst ${r.address} `), 15_000, 250);
      const routes = await tryRunIn(h.netns, 'ip', ['-4', 'route', 'show', 'proto', '198']);
      assert.equal(routes.stdout.trim().split('\n').length, 1, `one agent route left in ${h.netns} (to the other remaining node): ${routes.stdout}`);
      assert.match(routes.stdout, / dev berth\.vx /);
    }
  });

  // Last: it stops the agents.
  it('leaves no VXLAN device, route or FDB entry behind when the agents stop with --cleanup', async () => {
    for (const h of [a, c]) assert.notEqual(await fdb(h), '', `${h.netns} has its VXLAN peer before the agents stop`);
    for (const p of agents) await p.stop();
    for (const h of [a, r, c]) {
      const links = await tryRunIn(h.netns, 'ip', ['-o', 'link', 'show']);
      assert.equal(links.code, 0, links.stderr);
      assert.doesNotMatch(links.stdout, /^\d+: berth/m, `no berth links left in ${h.netns}:\n${links.stdout}`);
      const routes = await tryRunIn(h.netns, 'ip', ['-4', 'route', 'show', 'proto', '198']);
      assert.equal(routes.stdout.trim(), '', `no agent routes left in ${h.netns}`);
      assert.equal(await fdb(h), '', `no FDB entries left in ${h.netns}`);
    }
  });
});
