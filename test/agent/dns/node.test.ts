/**
 * The node resolver with a real container: a namespace host (no default
 * route, egress guard for the cluster and service ranges) plays the node,
 * NodeNetwork with a NodeDns gives a busybox container on its bridge
 * `nameserver <gateway>` and `search berth`, and busybox nslookup inside the
 * container asks the agent's resolver, bound in the host's namespace. The
 * resolver has no upstreams, so no query can leave the machine.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHosts, tryRunIn, type TestHosts } from '../../harness/index.js';
import { RuntimeFixture } from '../runtime/busybox.js';
import { DnsResolver, NodeDns, StaticDirectory } from '../../../agent/dns/index.js';
import { NodeNetwork } from '../../../agent/network/index.js';
import { bindInNetns, LinuxNetOps } from '../../../agent/sys/index.js';
import { silentLogger } from '../../../lib/index.js';
import { ContainerSpec } from '../../../proto/gen/berth/v1/types.js';

const CLUSTER = '10.244.0.0/16';
const SERVICES = '10.96.0.0/16';

describe('NodeDns in a namespace host', function () {
  this.timeout(180_000);
  let hosts: TestHosts | undefined;
  let fx: RuntimeFixture | undefined;
  let net: NodeNetwork | undefined;
  let dns: NodeDns | undefined;
  let dir = '';

  before(async () => {
    hosts = await makeHosts(1, { guardRanges: [CLUSTER, SERVICES] });
  });
  after(async () => {
    await hosts?.cleanup();
  });
  afterEach(async () => {
    const problems: string[] = [];
    await fx?.cleanup().catch((e: Error) => problems.push(e.message));
    await dns?.close().catch((e: Error) => problems.push(e.message));
    await net?.cleanup().catch((e: Error) => problems.push(e.message));
    if (dir !== '') await rm(dir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(problems.join('; '));
  });

  it('resolves a workload name to its service address inside a container and NXDOMAIN for an unknown .berth name', async () => {
    const host = hosts!.hosts[0]!;
    const netnsPath = `/run/netns/${host.netns}`;
    fx = await new RuntimeFixture().setup();
    dir = await mkdtemp(join(tmpdir(), 'berth-dns-'));
    const directory = new StaticDirectory([{ name: 'web', address: '10.96.0.10' }]);
    const resolver = new DnsResolver({ directory, upstreams: [], logger: silentLogger() });
    dns = new NodeDns({ resolver, bind: (a, p) => bindInNetns(a, p, netnsPath), logger: silentLogger() });
    net = new NodeNetwork({ ops: new LinuxNetOps({ nodeNetns: netnsPath }), logger: silentLogger(), stateDir: dir, subnet: '10.244.20.0/24', clusterCidr: CLUSTER, resolver: dns });
    await net.start();

    const id = `${Date.now().toString(16)}dns`.padEnd(64, 'b');
    const r = await net.setup(id, ContainerSpec.fromJSON({ image: 'busybox' }));
    assert.deepEqual(r.dns, ['10.244.20.1']);
    assert.deepEqual(r.dnsSearch, ['berth']);
    const script = [
      'cat /etc/resolv.conf',
      'echo "== web.berth"; nslookup -type=a web.berth; echo "rc=$?"',
      'echo "== web"; nslookup -type=a web; echo "rc=$?"',
      'echo "== nope"; nslookup -type=a nope.berth; echo "rc=$?"',
    ].join('; ');
    const { output } = await fx.runToExit(id, ['sh', '-c', script], { netnsPath: r.netnsPath, dns: r.dns, dnsSearch: r.dnsSearch });
    const text = output.join('\n');
    assert.match(text, /^nameserver 10\.244\.20\.1$/m, text);
    assert.match(text, /^search berth$/m, text);
    const section = (name: string): string => text.split(`== ${name}\n`)[1]?.split('\n==')[0] ?? '';
    assert.match(section('web.berth'), /Address:\s*10\.96\.0\.10\b/, text);
    assert.match(section('web.berth'), /rc=0/, text);
    assert.match(section('web'), /Address:\s*10\.96\.0\.10\b/, text);
    assert.match(section('nope'), /NXDOMAIN/, text);
    assert.doesNotMatch(section('nope'), /^Name:/m, text);
    assert.match(section('nope'), /rc=1/, text);

    // An agent restart: a new NodeNetwork over the same records serves again on start(), before any new container.
    await dns.close();
    const again = new NodeDns({ resolver: new DnsResolver({ directory, upstreams: [], logger: silentLogger() }), bind: (a, p) => bindInNetns(a, p, netnsPath), logger: silentLogger() });
    dns = again;
    await new NodeNetwork({ ops: new LinuxNetOps({ nodeNetns: netnsPath }), logger: silentLogger(), stateDir: dir, subnet: '10.244.20.0/24', clusterCidr: CLUSTER, resolver: again }).start();
    const asked = await tryRunIn(host.netns, 'busybox', ['nslookup', '-type=a', 'web.berth', '10.244.20.1'], { timeoutMs: 30_000 });
    assert.match(asked.stdout, /Address:\s*10\.96\.0\.10\b/, asked.stdout + asked.stderr);
  });
});
