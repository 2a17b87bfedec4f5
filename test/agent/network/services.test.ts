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
  ServiceSync, ServiceTableError, SERVICE_NFT_TABLE, expectedServiceRules, installedServiceRules, renderServiceTable, serviceTableInput, type ServiceTableInput,
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
    assert.deepEqual(serviceTableInput(res, 'berth0').services, [{ name: 'web', vip: '10.96.0.5', ports: [{ port: 80, protocol: 'tcp' }], endpoints: ['10.244.1.2'] }]);
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

  function list(endpoints: string[]): ListServicesResponse {
    return {
      serviceCidr: SVC,
      services: [{
        scaleToZero: false, name: 'web', virtualIp: '10.96.7.7', ports: [{ name: '', port: 80, protocol: 'tcp', targetPort: 80, published: 0 }],
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
});
