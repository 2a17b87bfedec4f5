/**
 * Service tables (agent/network/services.ts): the nft script is a pure
 * function of the services (checked here rule by rule), and ServiceSync
 * installs it with the real nft inside a namespace host (no default route,
 * egress guard covering the service range), reads it back, replaces it when
 * endpoints change and deletes it.
 */
import assert from 'node:assert/strict';
import { makeHosts, tryRunIn, type TestHosts } from '../../harness/index.js';
import {
  MESH_MARK, ServiceSync, withoutReservedPorts, ServiceTableError, SERVICE_NFT_TABLE, expectedMeshRejects, expectedServiceRules, installedRejectRules, installedServiceRules, meshPortOwner, renderServiceTable, serviceTableInput,
  type HoldTarget, type ServiceActivator, type ServiceTableInput,
} from '../../../agent/network/index.js';
import { LinuxNetOps, type NetOps } from '../../../agent/sys/index.js';
import { silentLogger } from '../../../lib/index.js';
import type { ListServicesResponse } from '../../../proto/gen/berth/v1/services.js';

const SVC = '10.96.0.0/16';

function input(services: ServiceTableInput['services']): ServiceTableInput {
  return { bridge: 'berth0', serviceCidr: SVC, services };
}

describe('renderServiceTable', () => {
  it('balances a service port over its endpoints with numgen random in prerouting and output, sorted by address', () => {
    const s = renderServiceTable(input([{ name: 'web', vip: '10.96.3.4', ports: [{ port: 80, protocol: 'tcp' }, { port: 53, protocol: 'udp' }], endpoints: ['10.244.2.7', '10.244.1.5'] }]));
    const rule80 = 'ip daddr 10.96.3.4 tcp dport 80 dnat to numgen random mod 2 map { 0 : 10.244.1.5, 1 : 10.244.2.7 } comment "s:web:80/tcp"';
    const rule53 = 'ip daddr 10.96.3.4 udp dport 53 dnat to numgen random mod 2 map { 0 : 10.244.1.5, 1 : 10.244.2.7 } comment "s:web:53/udp"';
    assert.equal(s.split('\n').filter((l) => l.trim() === rule80).length, 2, s);
    assert.equal(s.split('\n').filter((l) => l.trim() === rule53).length, 2, s);
    assert.ok(s.startsWith('table ip berth_svc {}\ndelete table ip berth_svc\ntable ip berth_svc {\n'), 'replaces the table as a whole');
    assert.match(s, /iifname "berth0" oifname "berth0" ct status dnat ct original ip daddr 10\.96\.0\.0\/16 masquerade comment "hairpin"/);
    assert.equal((s.match(/ip daddr 10\.96\.0\.0\/16 reject with icmp type host-unreachable/g) ?? []).length, 2, 'forward and output reject what was not DNATed');
  });

  it('uses a plain dnat for one endpoint and leaves out services without ready endpoints', () => {
    const i = input([
      { name: 'one', vip: '10.96.0.9', ports: [{ port: 8080, protocol: 'tcp' }], endpoints: ['10.244.0.3', '10.244.0.3'] },
      { name: 'none', vip: '10.96.0.10', ports: [{ port: 80, protocol: 'tcp' }], endpoints: [] },
    ]);
    const s = renderServiceTable(i);
    assert.match(s, /ip daddr 10\.96\.0\.9 tcp dport 8080 dnat to 10\.244\.0\.3 comment "s:one:8080\/tcp"/);
    assert.doesNotMatch(s, /10\.96\.0\.10/);
    assert.deepEqual(expectedServiceRules(i), ['s:one:8080/tcp']);
  });

  it('refuses values it will not write: a VIP outside the range, a bad address, port or protocol, a bridge name with spaces', () => {
    const ok = { name: 'w', vip: '10.96.0.2', ports: [{ port: 80, protocol: 'tcp' }], endpoints: ['10.244.0.2'] };
    assert.throws(() => renderServiceTable(input([{ ...ok, vip: '8.8.8.8' }])), /refusing virtual IP "8\.8\.8\.8" of service "w": expected an address in 10\.96\.0\.0\/16/);
    assert.throws(() => renderServiceTable(input([{ ...ok, endpoints: ['10.244.0.2; flush ruleset'] }])), /refusing endpoint address/);
    assert.throws(() => renderServiceTable(input([{ ...ok, ports: [{ port: 0, protocol: 'tcp' }] }])), /refusing port 0\/tcp/);
    assert.throws(() => renderServiceTable(input([{ ...ok, ports: [{ port: 80, protocol: 'sctp' }] }])), /refusing port 80\/sctp/);
    assert.throws(() => renderServiceTable({ ...input([ok]), bridge: 'br 0' }), /refusing to put "br 0"/);
  });

  it('takes only ready endpoints with an address from a List answer', () => {
    const res: ListServicesResponse = {
      serviceCidr: SVC,
      services: [{
        scaleToZero: false, name: 'web', virtualIp: '10.96.0.5', ports: [{ name: 'http', port: 80, protocol: 'tcp', targetPort: 80, published: 0 }],
        endpoints: [
          { containerId: 'a', containerName: 'web-1', node: 'n1', address: '10.244.1.2', ready: true, state: 'CONTAINER_STATE_RUNNING', health: '', draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0 },
          { containerId: 'b', containerName: 'web-2', node: 'n2', address: '10.244.2.2', ready: false, state: 'CONTAINER_STATE_RUNNING', health: 'unhealthy', draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0 },
          { containerId: 'c', containerName: 'web-3', node: 'n2', address: '', ready: true, state: 'CONTAINER_STATE_RUNNING', health: '', draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0 },
        ],
      }, { name: 'novip', virtualIp: '', ports: [], endpoints: [], scaleToZero: false }],
    };
    assert.deepEqual(serviceTableInput(res, 'berth0').services, [{ name: 'web', vip: '10.96.0.5', ports: [{ port: 80, protocol: 'tcp', targetPort: 80, published: 0 }], endpoints: ['10.244.1.2'] }]);
  });
});

describe('renderServiceTable (routing mesh)', () => {
  const markHex = `0x${MESH_MARK.toString(16).padStart(8, '0')}`;
  const lines = (s: string) => s.split('\n').map((l) => l.trim());

  it('DNATs a published port on every local address to the endpoints\' target port, marked for masquerade, in prerouting and output (not loopback)', () => {
    const i = input([{ name: 'web', vip: '10.96.3.4', ports: [{ port: 80, protocol: 'tcp', targetPort: 80, published: 8080 }], endpoints: ['10.244.2.7', '10.244.1.5'] }]);
    const s = renderServiceTable(i);
    const target = `meta mark set meta mark | ${markHex} dnat to numgen random mod 2 map { 0 : 10.244.1.5, 1 : 10.244.2.7 }:80 comment "p:web:8080/tcp"`;
    assert.ok(lines(s).includes(`fib daddr type local tcp dport 8080 ${target}`), s);
    assert.ok(lines(s).includes(`fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 ${target}`), s);
    assert.ok(lines(s).includes(`meta mark & ${markHex} == ${markHex} oifname != "berth0" masquerade comment "mesh to another node"`), s);
    assert.ok(lines(s).includes(`meta mark & ${markHex} == ${markHex} iifname "berth0" oifname "berth0" masquerade comment "mesh hairpin"`), s);
    // Not DNATed (never here with endpoints, but the rule is always there): refused, never handed to a process of the node.
    assert.ok(lines(s).includes('fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 ct status ! dnat reject with tcp reset comment "r:web:8080/tcp"'), s);
    assert.deepEqual(expectedServiceRules(i), ['p:web:8080/tcp', 's:web:80/tcp']);
    assert.deepEqual(expectedMeshRejects(i), ['r:web:8080/tcp']);
    // VIP traffic stays un-marked: container -> VIP -> container is not NATed beyond the hairpin.
    assert.ok(lines(s).includes('ip daddr 10.96.3.4 tcp dport 80 dnat to numgen random mod 2 map { 0 : 10.244.1.5, 1 : 10.244.2.7 } comment "s:web:80/tcp"'), s);
  });

  it('rejects a published port without ready endpoints instead of letting it fall through, and renders a service without a VIP', () => {
    const i = input([
      { name: 'idle', vip: '', ports: [{ port: 53, protocol: 'udp', published: 5353 }], endpoints: [] },
      { name: 'one', vip: '', ports: [{ port: 80, protocol: 'tcp', targetPort: 8000, published: 9000 }], endpoints: ['10.244.0.3'] },
    ]);
    const s = renderServiceTable(i);
    assert.ok(lines(s).includes('fib daddr type local ip daddr != 127.0.0.0/8 udp dport 5353 ct status ! dnat reject comment "r:idle:5353/udp"'), s);
    assert.doesNotMatch(s, /dport 5353 .*dnat to/);
    assert.ok(lines(s).includes(`fib daddr type local tcp dport 9000 meta mark set meta mark | ${markHex} dnat to 10.244.0.3:8000 comment "p:one:9000/tcp"`), s);
    assert.deepEqual(expectedServiceRules(i), ['p:one:9000/tcp']);
    assert.deepEqual(expectedMeshRejects(i), ['r:idle:5353/udp', 'r:one:9000/tcp']);
  });

  it('gives a published port to the first service by name when two publish it, and keeps tcp and udp apart', () => {
    const i = input([
      { name: 'b', vip: '10.96.0.3', ports: [{ port: 80, protocol: 'tcp', published: 8080 }], endpoints: ['10.244.0.9'] },
      { name: 'a', vip: '10.96.0.2', ports: [{ port: 80, protocol: 'tcp', published: 8080 }, { port: 80, protocol: 'udp', published: 8080 }], endpoints: ['10.244.0.8'] },
    ]);
    assert.deepEqual(expectedServiceRules(i), ['p:a:8080/tcp', 'p:a:8080/udp', 's:a:80/tcp', 's:a:80/udp', 's:b:80/tcp']);
    assert.deepEqual(expectedMeshRejects(i), ['r:a:8080/tcp', 'r:a:8080/udp']);
  });

  it('refuses a published port, hold address or hold port it will not write', () => {
    const ok = { name: 'w', vip: '10.96.0.2', ports: [{ port: 80, protocol: 'tcp', published: 8080 }], endpoints: [] as string[] };
    assert.throws(() => renderServiceTable(input([{ ...ok, ports: [{ port: 80, protocol: 'tcp', published: 70000 }] }])), /refusing published port 70000\/tcp of service "w"/);
    assert.throws(() => renderServiceTable(input([{ ...ok, hold: { address: '10.244.0.1; flush ruleset', ports: {} } }])), /refusing hold address/);
    assert.throws(() => renderServiceTable(input([{ ...ok, hold: { address: '10.244.0.1', ports: { '80/tcp': 0 } } }])), /refusing hold port "80\/tcp" -> 0 of service "w"/);
    assert.throws(() => renderServiceTable(input([{ ...ok, hold: { address: '10.244.0.1', ports: { 'x; drop': 1 } } }])), /refusing hold port "x; drop"/);
    assert.throws(() => renderServiceTable(input([{ ...ok, name: 'a"b' }])), /refusing to put "a\\"b"/);
  });

  it('sends the VIP and the published port of a service without ready endpoints to its hold target, and accepts the hold listener', () => {
    const hold: HoldTarget = { address: '10.244.0.1', ports: { '80/tcp': 40123 } };
    const i = input([{ name: 'lazy', vip: '10.96.0.7', ports: [{ port: 80, protocol: 'tcp', published: 8080 }, { port: 81, protocol: 'tcp', published: 8081 }], endpoints: [], hold }]);
    const s = renderServiceTable(i);
    assert.ok(lines(s).includes('ip daddr 10.96.0.7 tcp dport 80 dnat to 10.244.0.1:40123 comment "s:lazy:80/tcp"'), s);
    assert.ok(lines(s).includes('fib daddr type local tcp dport 8080 dnat to 10.244.0.1:40123 comment "p:lazy:8080/tcp"'), s);
    assert.ok(lines(s).includes('fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat to 10.244.0.1:40123 comment "p:lazy:8080/tcp"'), s);
    assert.ok(lines(s).includes('ip daddr 10.244.0.1 tcp dport 40123 accept comment "h:lazy:80/tcp"'), s);
    // Port 81 has no hold port: refused as before.
    assert.doesNotMatch(s, /dport 81 /);
    assert.deepEqual(expectedServiceRules(i), ['p:lazy:8080/tcp', 's:lazy:80/tcp']);
    assert.deepEqual(expectedMeshRejects(i), ['r:lazy:8080/tcp', 'r:lazy:8081/tcp']);
    // The accept comes before the rejects.
    assert.ok(s.indexOf('accept comment "h:lazy:80/tcp"') < s.indexOf('reject with tcp reset comment "r:lazy:8080/tcp"'));
    // With a ready endpoint the hold target is not used.
    const live = renderServiceTable(input([{ ...i.services[0]!, endpoints: ['10.244.0.5'] }]));
    assert.doesNotMatch(live, /40123/);
  });

  it('takes the node\'s own ports (agent API, DNS) out of the mesh and names what it took out', () => {
    const i = input([
      { name: 'dns', vip: '10.96.0.2', ports: [{ port: 53, protocol: 'udp', published: 53 }, { port: 53, protocol: 'tcp', published: 5353 }], endpoints: ['10.244.0.8'] },
      { name: 'web', vip: '10.96.0.3', ports: [{ port: 80, protocol: 'tcp', published: 7071 }], endpoints: ['10.244.0.9'] },
    ]);
    const { input: kept, skipped } = withoutReservedPorts(i, ['53/udp', '53/tcp', '7071/tcp']);
    assert.deepEqual(skipped, ['dns:53/udp', 'web:7071/tcp']);
    assert.deepEqual(expectedServiceRules(kept), ['p:dns:5353/tcp', 's:dns:53/tcp', 's:dns:53/udp', 's:web:80/tcp']);
    assert.doesNotMatch(renderServiceTable(kept), /dport 7071|udp dport 53 .*fib|fib .*udp dport 53 /);
    assert.equal(withoutReservedPorts(i, []).input, i);
  });

  it('attaches hold targets by service name from an activator\'s answer and knows which workload publishes a port', () => {
    const res: ListServicesResponse = {
      serviceCidr: SVC,
      services: [
        { scaleToZero: true, name: 'lazy', virtualIp: '', ports: [{ name: '', port: 80, protocol: 'tcp', targetPort: 0, published: 8080 }], endpoints: [] },
        { scaleToZero: false, name: 'plain', virtualIp: '10.96.0.8', ports: [{ name: '', port: 80, protocol: 'tcp', targetPort: 80, published: 0 }], endpoints: [] },
      ],
    };
    const hold: HoldTarget = { address: '10.244.0.1', ports: { '80/tcp': 40000 } };
    const got = serviceTableInput(res, 'berth0', new Map([['lazy', hold]]));
    assert.deepEqual(got.services.map((s) => [s.name, s.hold]), [['lazy', hold], ['plain', undefined]]);
    assert.deepEqual(got.services[0]!.ports, [{ port: 80, protocol: 'tcp', targetPort: 80, published: 8080 }]);
    assert.equal(meshPortOwner(res, 8080, 'tcp'), 'lazy');
    assert.equal(meshPortOwner(res, 8080, 'udp'), undefined);
    assert.equal(meshPortOwner(undefined, 8080, 'tcp'), undefined);
  });
});

describe('ServiceSync (real nft in a namespace host)', function () {
  this.timeout(60_000);
  let hosts: TestHosts | undefined;

  before(async () => {
    hosts = await makeHosts(1, { guardRanges: [SVC] });
  });
  after(async () => {
    await hosts?.cleanup();
  });

  function list(endpoints: string[], published = 0): ListServicesResponse {
    return {
      serviceCidr: SVC,
      services: [{
        scaleToZero: false, name: 'web', virtualIp: '10.96.7.7', ports: [{ name: '', port: 80, protocol: 'tcp', targetPort: 80, published }],
        endpoints: endpoints.map((a, i) => ({ containerId: `c${i}`, containerName: `web-${i}`, node: 'n', address: a, ready: true, state: 'CONTAINER_STATE_RUNNING', health: '', draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0 })),
      }],
    };
  }

  it('installs the table, reads it back, replaces it when endpoints change and deletes it', async () => {
    const h = hosts!.hosts[0]!;
    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${h.netns}` });
    const sync = new ServiceSync({ ops, logger: silentLogger(), bridge: 'berth0' });
    await sync.apply(list(['10.244.1.2', '10.244.2.2']));
    let r = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', SERVICE_NFT_TABLE]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ip daddr 10\.96\.7\.7 tcp dport 80 dnat to numgen random mod 2 map \{ 0 : 10\.244\.1\.2, 1 : 10\.244\.2\.2 \}/);
    const items = (await ops.nftListTable('ip', SERVICE_NFT_TABLE)) ?? [];
    assert.deepEqual(installedServiceRules(items), new Map([['prerouting', ['s:web:80/tcp']], ['output', ['s:web:80/tcp']]]));
    await sync.apply(list(['10.244.2.2']));
    r = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', SERVICE_NFT_TABLE]);
    assert.match(r.stdout, /dnat to 10\.244\.2\.2 comment "s:web:80\/tcp"/);
    assert.doesNotMatch(r.stdout, /10\.244\.1\.2/);
    await sync.apply(list([]));
    r = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', SERVICE_NFT_TABLE]);
    assert.doesNotMatch(r.stdout, /dnat to/);
    await sync.clear();
    r = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', SERVICE_NFT_TABLE]);
    assert.notEqual(r.code, 0, 'the table is gone');
  });

  it('fails loudly when the table reads back without the expected rules', async () => {
    const h = hosts!.hosts[0]!;
    const real = new LinuxNetOps({ nodeNetns: `/run/netns/${h.netns}` });
    // The real kernel, but the read-back is made to miss the output chain's rules (as if a rule did not install).
    const ops: NetOps = Object.assign(Object.create(real) as NetOps, {
      nftListTable: async (family: string, name: string) => ((await real.nftListTable(family, name)) ?? []).filter((i) => (i as { rule?: { chain?: string } }).rule?.chain !== 'output'),
    });
    const sync = new ServiceSync({ ops, logger: silentLogger(), bridge: 'berth0' });
    await assert.rejects(sync.apply(list(['10.244.1.2'])), (err: unknown) => err instanceof ServiceTableError && /chain output holds DNAT rules \[\] after nft -f, expected \["s:web:80\/tcp"\]/.test(err.message));
    await real.nftDeleteTable('ip', SERVICE_NFT_TABLE);
  });

  it('installs published-port DNAT, rejects and hold rules, reads them back and asks the activator before every render', async () => {
    const h = hosts!.hosts[0]!;
    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${h.netns}` });
    const asked: string[][] = [];
    const activator: ServiceActivator = {
      prepare: async (res) => {
        asked.push(res.services.map((s) => s.name));
        return new Map(res.services.filter((s) => s.endpoints.length === 0).map((s) => [s.name, { address: '10.244.0.1', ports: { '80/tcp': 40001 } }]));
      },
    };
    const sync = new ServiceSync({ ops, logger: silentLogger(), bridge: 'berth0', activator });
    await sync.apply(list(['10.244.1.2'], 8080));
    let r = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', SERVICE_NFT_TABLE]);
    assert.match(r.stdout, /fib daddr type local tcp dport 8080 meta mark set meta mark \| 0x00b40000 dnat to 10\.244\.1\.2:80 comment "p:web:8080\/tcp"/);
    let items = (await ops.nftListTable('ip', SERVICE_NFT_TABLE)) ?? [];
    assert.deepEqual(installedServiceRules(items), new Map([['prerouting', ['p:web:8080/tcp', 's:web:80/tcp']], ['output', ['p:web:8080/tcp', 's:web:80/tcp']]]));
    assert.deepEqual(installedRejectRules(items).get('input'), ['r:web:8080/tcp']);
    assert.equal(sync.publishedBy(8080, 'tcp'), 'web');
    await sync.apply(list([], 8080));
    r = await tryRunIn(h.netns, 'nft', ['list', 'table', 'ip', SERVICE_NFT_TABLE]);
    assert.match(r.stdout, /ip daddr 10\.96\.7\.7 tcp dport 80 dnat to 10\.244\.0\.1:40001/);
    assert.match(r.stdout, /tcp dport 8080 dnat to 10\.244\.0\.1:40001/);
    assert.match(r.stdout, /ip daddr 10\.244\.0\.1 tcp dport 40001 accept/);
    assert.deepEqual(asked, [['web'], ['web']]);
    items = (await ops.nftListTable('ip', SERVICE_NFT_TABLE)) ?? [];
    assert.deepEqual(installedServiceRules(items).get('output'), ['p:web:8080/tcp', 's:web:80/tcp']);
    await sync.clear();
  });

  it('leaves a port a single container on the node publishes to it, and keeps the VIP', async () => {
    const h = hosts!.hosts[0]!;
    const ops = new LinuxNetOps({ nodeNetns: `/run/netns/${h.netns}` });
    let local: string[] = ['8080/tcp'];
    const sync = new ServiceSync({ ops, logger: silentLogger(), bridge: 'berth0', localPorts: () => local });
    await sync.apply(list(['10.244.1.2'], 8080));
    let items = (await ops.nftListTable('ip', SERVICE_NFT_TABLE)) ?? [];
    assert.deepEqual(installedServiceRules(items).get('prerouting'), ['s:web:80/tcp']);
    assert.equal(installedRejectRules(items).get('input'), undefined);
    // The container is gone: the mesh takes the port on the next sync.
    local = [];
    await sync.apply(list(['10.244.1.2'], 8080));
    items = (await ops.nftListTable('ip', SERVICE_NFT_TABLE)) ?? [];
    assert.deepEqual(installedServiceRules(items).get('prerouting'), ['p:web:8080/tcp', 's:web:80/tcp']);
    await sync.clear();
  });

  it('fails loudly when the published-port rejects do not read back', async () => {
    const h = hosts!.hosts[0]!;
    const real = new LinuxNetOps({ nodeNetns: `/run/netns/${h.netns}` });
    const ops: NetOps = Object.assign(Object.create(real) as NetOps, {
      nftListTable: async (family: string, name: string) => ((await real.nftListTable(family, name)) ?? []).filter((i) => (i as { rule?: { chain?: string } }).rule?.chain !== 'input'),
    });
    const sync = new ServiceSync({ ops, logger: silentLogger(), bridge: 'berth0' });
    await assert.rejects(sync.apply(list([], 8080)), (err: unknown) => err instanceof ServiceTableError && /chain input holds published-port rejects \[\] after nft -f, expected \["r:web:8080\/tcp"\]/.test(err.message));
    await real.nftDeleteTable('ip', SERVICE_NFT_TABLE);
  });
});
