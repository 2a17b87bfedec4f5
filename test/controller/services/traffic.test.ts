/**
 * controller/services/traffic: agents' traffic reports are checked like every
 * report (hostile ones dropped whole), the newest figures per container are
 * kept until they go stale, ServiceDirectory's endpoints carry them, and
 * NatsNodeTraffic receives them from a real NATS server.
 */
import assert from 'node:assert/strict';
import { NatsNodeTraffic, TrafficTable, parseNodeTraffic, serviceEndpoints } from '../../../controller/services/index.js';
import { TRAFFIC_VERSION, trafficSubject } from '../../../lib/index.js';
import { NodeTraffic, type EndpointTraffic } from '../../../proto/gen/berth/v1/traffic.js';
import { Container, ContainerState, ContainerStatus, NodeState } from '../../../proto/gen/berth/v1/types.js';
import { deliverOverNats } from '../nodes/over-nats.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

function endpoint(id: string, extra: Partial<EndpointTraffic> = {}): EndpointTraffic {
  return { workload: 'web', containerId: id, address: '10.244.1.2', requestsPerSecond: 12.5, connectionsPerSecond: 3, openConnections: 4, ...extra };
}

function report(node: string, endpoints: EndpointTraffic[], extra: Partial<NodeTraffic> = {}): NodeTraffic {
  return { version: TRAFFIC_VERSION, node, unixMs: 1, endpoints, ...extra };
}

const bytes = (m: NodeTraffic): Uint8Array => NodeTraffic.encode(m).finish();

describe('parseNodeTraffic', () => {
  it('accepts a well-formed report on its node\'s subject', () => {
    const m = parseNodeTraffic(trafficSubject('n1'), bytes(report('n1', [endpoint(A)])));
    assert.notEqual(typeof m, 'string', String(m));
    assert.deepEqual((m as NodeTraffic).endpoints, [endpoint(A)]);
  });

  it('drops hostile or misrouted reports whole, saying why', () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ['berth.v1.node.N_1.traffic', bytes(report('N_1', [])), /does not name a valid node/],
      [trafficSubject('n1'), bytes(report('n2', [])), /names node "n2" on the subject of node "n1"/],
      [trafficSubject('n1'), bytes(report('n1', [], { version: 99 })), /version 99; expected 1/],
      [trafficSubject('n1'), new Uint8Array([0xff, 0xff, 0xff]), /does not decode/],
      [trafficSubject('n1'), new Uint8Array(1024 * 1024 + 1), /expected at most 1048576/],
      [trafficSubject('n1'), bytes(report('n1', [endpoint('xyz')])), /endpoint id "xyz" is not 64 hex characters/],
      [trafficSubject('n1'), bytes(report('n1', [endpoint(A, { workload: 'Bad Name' })])), /names workload "Bad Name", not a valid name/],
      [trafficSubject('n1'), bytes(report('n1', [endpoint(A, { address: '10.0.0.1; x' })])), /address "10\.0\.0\.1; x", expected an IPv4 address/],
      [trafficSubject('n1'), bytes(report('n1', [endpoint(A, { requestsPerSecond: -1 })])), /negative or non-finite figure/],
      [trafficSubject('n1'), bytes(report('n1', [endpoint(B), endpoint(A, { openConnections: Number.NaN })])), /aaaaaaaaaaaa has a negative or non-finite figure/],
    ];
    for (const [subject, data, reason] of cases) {
      const got = parseNodeTraffic(subject, data);
      assert.equal(typeof got, 'string', `${subject} should be dropped`);
      assert.match(got as string, reason);
    }
  });
});

describe('TrafficTable', () => {
  it('keeps the newest figures per container and drops them after the max age without a report', () => {
    let now = 0;
    const t = new TrafficTable({ maxAgeMs: 6000, now: () => now });
    t.ingest(report('n1', [endpoint(A), endpoint(B, { requestsPerSecond: 1 })]), 0);
    assert.deepEqual(t.figures('n1', A), { requestsPerSecond: 12.5, connectionsPerSecond: 3, openConnections: 4 });
    assert.equal(t.figures('n2', A), undefined, 'a container is looked up on its own node only');
    now = 2000;
    t.ingest(report('n1', [endpoint(A, { requestsPerSecond: 0 })]), 2000);
    assert.equal(t.figures('n1', A)?.requestsPerSecond, 0);
    assert.equal(t.figures('n1', B), undefined, 'the node no longer lists it');
    now = 8001;
    assert.equal(t.figures('n1', A), undefined, 'stale');
    assert.equal(t.size, 0);
  });

  it('gives ServiceDirectory endpoints their node\'s figures and 0 for endpoints without a report', () => {
    const c = (id: string, name: string, node: string): Container => ({
      ...Container.fromJSON({ id, name, node, workload: 'web' }),
      status: { ...ContainerStatus.fromJSON({}), state: ContainerState.CONTAINER_STATE_RUNNING, ipAddress: '10.244.1.2' },
    });
    const t = new TrafficTable();
    t.ingest(report('n1', [endpoint(A)]));
    const eps = serviceEndpoints('web', [c(A, 'web-a', 'n1'), c(B, 'web-b', 'n2')], () => NodeState.NODE_STATE_READY, t);
    assert.deepEqual(eps.map((e) => [e.containerName, e.requestsPerSecond, e.connectionsPerSecond, e.openConnections]), [['web-a', 12.5, 3, 4], ['web-b', 0, 0, 0]]);
  });
});

describe('NatsNodeTraffic (real NATS)', function () {
  this.timeout(30_000);

  it('delivers accepted reports and counts dropped ones', async () => {
    const r = await deliverOverNats<NodeTraffic>((servers, deliver) => new NatsNodeTraffic({ servers, deliver }), [
      [trafficSubject('n1'), bytes(report('n2', [endpoint(A)]))],
      [trafficSubject('n1'), bytes(report('n1', [endpoint(A)]))],
    ], { accepted: 1, dropped: 1 });
    assert.equal(r.got.length, 1);
    assert.equal(r.dropped, 1);
    assert.equal(r.got[0]?.endpoints[0]?.requestsPerSecond, 12.5);
  });
});

