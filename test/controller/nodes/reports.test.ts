import assert from 'node:assert/strict';
import { connect, type NatsConnection } from 'nats';
import { ContainerReport } from '../../../proto/gen/berth/v1/status.js';
import { Container } from '../../../proto/gen/berth/v1/types.js';
import { NatsContainerReports, ObservedState, containersSubject, parseContainerReport } from '../../../controller/nodes/index.js';
import { startNats, waitFor, type Service } from '../../harness/index.js';

function ctr(n: number, node = 'n1'): Container {
  return { ...Container.decode(new Uint8Array()), id: n.toString(16).padStart(64, '0'), name: `web-${n}`, node, workload: 'web' };
}

function report(node: string, full: boolean, containers: Container[], removed: string[] = []): ContainerReport {
  return { node, unixMs: 1, full, containers, removed };
}

const enc = (r: ContainerReport): Uint8Array => ContainerReport.encode(r).finish();

describe('parseContainerReport', () => {
  it('accepts a report whose subject, body and containers agree', () => {
    const r = parseContainerReport(containersSubject('n1'), enc(report('n1', true, [ctr(1)])));
    assert.ok(typeof r !== 'string');
    assert.equal(r.report.containers.length, 1);
  });

  it('drops reports that lie about their node, are garbage, too big, or carry bad ids', () => {
    assert.match(parseContainerReport('berth.v1.node.N_1.containers', new Uint8Array()) as string, /does not name a valid node/);
    assert.match(parseContainerReport(containersSubject('n1'), enc(report('n2', true, []))) as string, /names node "n2" on the subject of node "n1"/);
    assert.match(parseContainerReport(containersSubject('n1'), enc(report('n1', true, [ctr(1, 'n2')]))) as string, /report of node "n1" lists container "0+1" of node "n2"/);
    assert.match(parseContainerReport(containersSubject('n1'), enc(report('n1', true, [{ ...ctr(1), id: '../x' }]))) as string, /expected 64 hex characters/);
    assert.match(parseContainerReport(containersSubject('n1'), enc(report('n1', false, [], ['zz']))) as string, /removes container id "zz"; expected 64 hex/);
    assert.match(parseContainerReport(containersSubject('n1'), new Uint8Array([0xff, 0xff, 0xff])) as string, /does not decode/);
    assert.match(parseContainerReport(containersSubject('n1'), new Uint8Array(1024 * 1024 + 1)) as string, /expected at most 1048576/);
  });
});

describe('ObservedState', () => {
  it('replaces a node view on a full report and updates it on deltas', () => {
    const o = new ObservedState();
    assert.equal(o.synced('n1'), false);
    o.apply('n1', report('n1', false, [ctr(1)]));
    assert.equal(o.synced('n1'), false, 'a delta alone does not sync a node');
    o.apply('n1', report('n1', true, [ctr(2), ctr(3)]));
    assert.equal(o.synced('n1'), true);
    assert.deepEqual(o.containers('n1').map((c) => c.name).sort(), ['web-2', 'web-3']);
    o.apply('n1', report('n1', false, [ctr(4)], [ctr(2).id]));
    assert.deepEqual(o.containers('n1').map((c) => c.name).sort(), ['web-3', 'web-4']);
    assert.equal(o.find(ctr(4).id)?.node, 'n1');
    assert.deepEqual(o.containers('n2'), []);
  });
});

describe('NatsContainerReports', () => {
  let nats: Service;
  let nc: NatsConnection | undefined;
  let sub: NatsContainerReports | undefined;
  before(async () => {
    nats = await startNats();
  });
  after(async () => {
    await nats?.stop();
  });
  afterEach(async () => {
    await sub?.stop();
    await nc?.close();
  });

  it('feeds valid reports from NATS into the observed state and drops forged ones', async () => {
    const observed = new ObservedState();
    sub = new NatsContainerReports({ servers: [nats.url], observed });
    await sub.start();
    nc = await connect({ servers: nats.url });
    nc.publish(containersSubject('n1'), enc(report('n2', true, [ctr(9, 'n2')])));
    nc.publish(containersSubject('n1'), enc(report('n1', true, [ctr(1)])));
    await waitFor('the valid report', () => observed.synced('n1'), 5000);
    assert.equal(observed.containers('n1').length, 1);
    assert.equal(observed.synced('n2'), false);
    assert.equal(sub.dropped, 1);
  });
});
