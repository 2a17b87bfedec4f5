import assert from 'node:assert/strict';
import { containersSubject, heartbeatSubject, HEARTBEAT_SUBJECT_WILDCARD, metricsSubject, nodeOfSubject, pullSubject } from '../../lib/index.js';

describe('lib/subjects', () => {
  it('spells every per-node subject as berth.v1.node.<node>.<kind>', () => {
    assert.equal(heartbeatSubject('n1'), 'berth.v1.node.n1.heartbeat');
    assert.equal(containersSubject('n1'), 'berth.v1.node.n1.containers');
    assert.equal(metricsSubject('n1'), 'berth.v1.node.n1.metrics');
    assert.equal(pullSubject('n1'), 'berth.v1.node.n1.pull');
    assert.equal(HEARTBEAT_SUBJECT_WILDCARD, 'berth.v1.node.*.heartbeat');
  });

  it('reads the node back only from a well-formed subject of the expected kind', () => {
    assert.equal(nodeOfSubject(metricsSubject('node-2'), 'metrics'), 'node-2');
    assert.equal(nodeOfSubject(metricsSubject('node-2'), 'heartbeat'), undefined);
    assert.equal(nodeOfSubject('berth.v1.node.Bad_Name.metrics', 'metrics'), undefined);
    assert.equal(nodeOfSubject('berth.v1.node.a.b.metrics', 'metrics'), undefined);
    assert.equal(nodeOfSubject('other.v1.node.n1.metrics', 'metrics'), undefined);
    assert.equal(nodeOfSubject('berth.v1.node..metrics', 'metrics'), undefined);
  });
});
