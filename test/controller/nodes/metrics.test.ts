import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NatsNodeMetrics, metricsSubject, parseNodeMetrics } from '../../../controller/nodes/index.js';
import { NodeMetrics, type ReplicaMetrics } from '../../../proto/gen/berth/v1/metrics.js';
import { deliverOverNats } from './over-nats.js';

const id = (): string => randomBytes(32).toString('hex');

function replica(over: Partial<ReplicaMetrics> = {}): ReplicaMetrics {
  return { workload: 'web', containerId: id(), ready: true, cpuPercent: 42, memoryBytes: 1 << 20, requestsPerSecond: 3, connections: 1, ...over };
}

function encode(m: Partial<NodeMetrics>): Uint8Array {
  return NodeMetrics.encode({ version: 1, node: 'n1', unixMs: Date.now(), replicas: [replica()], ...m }).finish();
}

describe('node metrics', () => {
  it('accepts a well-formed message', () => {
    const m = parseNodeMetrics(metricsSubject('n1'), encode({}));
    assert.equal(typeof m, 'object');
    assert.equal((m as NodeMetrics).replicas[0]?.cpuPercent, 42);
  });

  const bad: [string, string, Uint8Array, RegExp][] = [
    ['a subject that names no valid node', 'berth.v1.node.N_1.metrics', encode({}), /does not name a valid node/],
    ['another node\'s name in the body', metricsSubject('n2'), encode({}), /name node "n1" on the subject of node "n2"/],
    ['an unknown version', metricsSubject('n1'), encode({ version: 2 }), /version 2; expected 1/],
    ['a bad container id', metricsSubject('n1'), encode({ replicas: [replica({ containerId: '../x' })] }), /is not 64 hex characters/],
    ['a bad workload name', metricsSubject('n1'), encode({ replicas: [replica({ workload: 'Web!' })] }), /not a valid name/],
    ['a negative figure', metricsSubject('n1'), encode({ replicas: [replica({ cpuPercent: -1 })] }), /negative or non-finite/],
    ['a non-finite figure', metricsSubject('n1'), encode({ replicas: [replica({ requestsPerSecond: Infinity })] }), /negative or non-finite/],
    ['bytes that do not decode', metricsSubject('n1'), Uint8Array.from([0xff, 0xff, 0xff]), /do not decode/],
  ];
  for (const [what, subject, data, reason] of bad) {
    it(`drops ${what}`, () => {
      const r = parseNodeMetrics(subject, data);
      assert.equal(typeof r, 'string');
      assert.match(r as string, reason);
    });
  }

  it('delivers accepted messages with the receipt time and counts dropped ones over real NATS', async function () {
    this.timeout(30_000);
    const before = Date.now();
    const r = await deliverOverNats<NodeMetrics>((servers, deliver) => new NatsNodeMetrics({ servers, deliver }), [
      [metricsSubject('n1'), encode({ unixMs: 1 })],
      [metricsSubject('n1'), encode({ version: 9 })],
    ], { accepted: 1, dropped: 1 });
    assert.equal(r.got.length, 1);
    assert.equal(r.dropped, 1);
    assert.ok((r.receivedMs[0] ?? 0) >= before, 'receipt time is the controller\'s clock, not the agent\'s');
  });
});
