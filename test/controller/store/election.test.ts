import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import { EtcdElection, EtcdStore, type LeadershipTerm } from '../../../controller/store/index.js';
import { startEtcd, waitFor, type Service } from '../../harness/index.js';

describe('EtcdElection', () => {
  let etcd: Service;
  const stores: EtcdStore[] = [];
  const elections: EtcdElection[] = [];

  beforeEach(async () => {
    etcd = await startEtcd();
  });
  afterEach(async () => {
    etcd?.process.child.kill('SIGCONT');
    await Promise.all(elections.splice(0).map((e) => e.stop()));
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await etcd?.stop();
  });

  function candidate(id: string, prefix: string): EtcdElection {
    const store = new EtcdStore({ endpoints: [etcd.url], prefix, timeoutMs: 1500 });
    stores.push(store);
    const e = new EtcdElection(store, { controllerId: id });
    elections.push(e);
    return e;
  }

  it('elects exactly one leader that the others know, and hands over when it resigns', async () => {
    const prefix = `/test-${randomBytes(4).toString('hex')}/`;
    const a = candidate('a', prefix);
    const b = candidate('b', prefix);
    const terms: LeadershipTerm[] = [];
    a.onTerm((t) => terms.push(t));
    b.onTerm((t) => terms.push(t));
    a.start();
    b.start();
    await waitFor('one leader known to both', () => [a, b].filter((e) => e.isLeader()).length === 1 && a.leaderId() !== undefined && a.leaderId() === b.leaderId(), 10000);
    const leader = a.isLeader() ? a : b;
    const follower = leader === a ? b : a;
    assert.equal(terms.length, 1);
    assert.equal(terms[0]?.controllerId, leader.controllerId);
    assert.equal(follower.currentTerm(), undefined);

    await leader.stop();
    assert.equal(terms[0]?.signal.aborted, true);
    await waitFor('the follower to lead after the leader resigned', () => follower.isLeader(), 2000);
    assert.equal(follower.leaderId(), follower.controllerId);
    assert.equal(terms.length, 2);
  });

  it('steps down when its leader key is removed behind its back', async () => {
    const prefix = `/test-${randomBytes(4).toString('hex')}/`;
    const a = candidate('a', prefix);
    a.start();
    await waitFor('a to lead', () => a.isLeader(), 10000);
    const term = a.currentTerm();
    assert.ok(term);
    const raw = new Etcd3({ hosts: etcd.url });
    try {
      await raw.delete().key(`${prefix}election/leader`);
    } finally {
      raw.close();
    }
    await waitFor('a to step down', () => term.signal.aborted, 3000, 50);
    await waitFor('a to lead again with a new term', () => a.isLeader() && a.currentTerm() !== term, 10000);
  });

  it('steps down within the lease TTL when etcd stops answering', async () => {
    const prefix = `/test-${randomBytes(4).toString('hex')}/`;
    const a = candidate('a', prefix);
    a.start();
    await waitFor('a to lead', () => a.isLeader(), 10000);
    const term = a.currentTerm();
    assert.ok(term);
    // Freeze etcd: keepalives go unanswered, like a network partition.
    etcd.process.child.kill('SIGSTOP');
    await waitFor('a to step down', () => !a.isLeader() && term.signal.aborted, 3000, 50);
    etcd.process.child.kill('SIGCONT');
    await waitFor('a to lead again once etcd answers', () => a.isLeader(), 15000);
  });
});
