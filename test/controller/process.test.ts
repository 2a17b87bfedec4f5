/**
 * Two real controller processes (`node cmd/berth.cjs controller ...`) against real
 * etcd and NATS: leader failover on kill -9, resignation on SIGTERM, and node
 * Ready/NotReady from heartbeats published on NATS.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { Heartbeat } from '../../proto/gen/berth/v1/status.js';
import { NodeSpec, NodeState } from '../../proto/gen/berth/v1/types.js';
import type { VersionResponse } from '../../proto/gen/berth/v1/controller.js';
import { startEtcd, startNats, startProcess, tailLog, waitFor, type ManagedProcess, type Service } from '../harness/index.js';
import { call, connectClients, manifest, type Clients } from './helpers.js';

const berth = fileURLToPath(new URL('../../cmd/berth.cjs', import.meta.url));

interface Controller {
  id: string;
  proc: ManagedProcess;
  /** Everything it wrote to stderr (its log) so far. */
  log(): string;
  address: string;
  clients: Clients;
}

describe('controller process', () => {
  let etcd: Service;
  let nats: Service;
  const running: Controller[] = [];

  beforeEach(async () => {
    [etcd, nats] = await Promise.all([startEtcd(), startNats()]);
  });
  afterEach(async () => {
    for (const c of running.splice(0)) {
      c.clients.close();
      await c.proc.stop(3000);
    }
    await Promise.all([etcd?.stop(), nats?.stop()]);
  });

  async function startController(id: string, etcdUrl = etcd.url): Promise<Controller> {
    const proc = startProcess({
      name: `controller-${id}`,
      command: process.execPath,
      args: () => [berth, 'controller', '--etcd', etcdUrl, '--nats', nats.url, '--listen', '127.0.0.1:0', '--id', id, '--default-registry', '127.0.0.1:5000', '--log-level', 'debug'],
    });
    let out = '';
    let err = '';
    proc.child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    proc.child.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    let address = '';
    await waitFor(`controller ${id} to print its address`, () => {
      if (proc.exited()) throw new Error(`controller ${id} exited:\n${tailLog(proc)}`);
      const m = /^listening on (\S+)$/m.exec(out);
      if (m) address = m[1] as string;
      return address !== '';
    }, 20000);
    const c: Controller = { id, proc, address, clients: connectClients(address), log: () => err };
    running.push(c);
    return c;
  }

  const version = (c: Controller): Promise<VersionResponse> => call(c.clients.system, c.clients.system.version, {});

  async function leaderOf(cs: Controller[]): Promise<{ leader: Controller; others: Controller[] }> {
    let leader: Controller | undefined;
    await waitFor('one controller to lead and the others to know it', async () => {
      const vs = await Promise.all(cs.map(version));
      const leaders = vs.filter((v) => v.leader);
      if (leaders.length !== 1) return false;
      leader = cs.find((c) => c.id === leaders[0]?.controllerId);
      return vs.every((v) => v.leaderId === leader?.id);
    }, 15000);
    assert.ok(leader);
    return { leader, others: cs.filter((c) => c !== leader) };
  }

  it('replaces a kill -9ed leader within 5 s and loses no workload', async () => {
    const cs = await Promise.all([startController('a'), startController('b')]);
    const { leader, others } = await leaderOf(cs);
    const follower = others[0] as Controller;
    // Both answer writes and reads.
    await call(leader.clients.workloads, leader.clients.workloads.apply, { manifest: manifest('web'), source: 'web.yaml', dryRun: false });
    const viaFollower = await call(follower.clients.workloads, follower.clients.workloads.apply, { manifest: manifest('api'), source: 'api.yaml', dryRun: false });
    assert.equal(viaFollower.results[0]?.action, 'created');

    const killedAt = Date.now();
    await leader.proc.kill9();
    await waitFor('the follower to report leader=true', async () => (await version(follower)).leader, 5000, 50);
    if (process.env['BERTH_TEST_VERBOSE']) process.stderr.write(`failover took ${Date.now() - killedAt} ms\n`);

    const res = await call(follower.clients.workloads, follower.clients.workloads.apply, { manifest: `${manifest('web', { replicas: 2 })}---\n${manifest('db')}`, source: 'x.yaml', dryRun: false });
    assert.deepEqual(res.results.map((r) => [r.name, r.action, r.revision]), [['web', 'configured', 2], ['db', 'created', 1]]);
    const list = await call(follower.clients.workloads, follower.clients.workloads.list, { selector: {} });
    assert.deepEqual(list.workloads.map((w) => w.metadata?.name), ['api', 'db', 'web']);
    const v = await version(follower);
    assert.equal(v.leaderId, follower.id);
  });

  it('resigns on SIGTERM so the other takes over, and exits 0', async () => {
    const cs = await Promise.all([startController('a'), startController('b')]);
    const { leader, others } = await leaderOf(cs);
    const exited = new Promise<number | null>((resolve) => leader.proc.child.once('close', (code) => resolve(code)));
    leader.proc.child.kill('SIGTERM');
    assert.equal(await exited, 0);
    await waitFor('the other controller to lead', async () => (await version(others[0] as Controller)).leader, 3000, 50);
    assert.match(leader.log(), /controller stopped/);
  });

  it('exits 2 with one clear line for a bad flag value', async () => {
    const proc = startProcess({
      name: 'controller-bad',
      command: process.execPath,
      args: () => [berth, 'controller', '--listen', 'nowhere'],
    });
    try {
      let stderr = '';
      proc.child.stderr?.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      // 'close' comes after the output streams are drained, unlike 'exit'.
      const code = await new Promise<number | null>((resolve) => proc.child.once('close', (c) => resolve(c)));
      assert.equal(code, 2);
      assert.match(stderr, /^berth controller: --listen: expected HOST:PORT such as 127\.0\.0\.1:7070, got "nowhere"$/m);
    } finally {
      await proc.stop();
    }
  });

  it('serves, and answers UNAVAILABLE naming etcd, while etcd cannot be reached', async () => {
    const c = await startController('lonely', 'http://127.0.0.1:1');
    await assert.rejects(
      call(c.clients.workloads, c.clients.workloads.list, { selector: {} }),
      (err: unknown) => {
        const e = err as { code: number; details: string };
        assert.equal(e.code, 14);
        assert.match(e.details, /^failed to reach etcd at "http:\/\/127\.0\.0\.1:1"/);
        return true;
      },
    );
    const v = await version(c);
    assert.equal(v.leader, false);
    assert.equal(v.leaderId, '');
  });

  it('stops with exit 0 on SIGTERM while neither etcd nor NATS can be reached', async () => {
    const proc = startProcess({
      name: 'controller-offline',
      command: process.execPath,
      args: () => [berth, 'controller', '--etcd', 'http://127.0.0.1:1', '--nats', 'nats://127.0.0.1:1', '--listen', '127.0.0.1:0'],
    });
    try {
      let out = '';
      proc.child.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
      });
      await waitFor('the offline controller to listen', () => /^listening on /m.test(out), 20000);
      const exited = new Promise<number | null>((resolve) => proc.child.once('exit', (c) => resolve(c)));
      proc.child.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running after 8 s'), 8000))]);
      assert.equal(code, 0);
    } finally {
      await proc.stop();
    }
  });

  describe('nodes', () => {
    let nc: NatsConnection | undefined;
    afterEach(async () => {
      await nc?.close();
      nc = undefined;
    });

    it('shows a node Ready while it heartbeats and NotReady within 5 s after it stops', async () => {
      const c = await startController('a');
      await leaderOf([c]);
      const spec: NodeSpec = { ...NodeSpec.decode(new Uint8Array()), name: 'node-1', address: '127.0.0.1:7171', labels: { zone: 'a' } };
      await call(c.clients.nodes, c.clients.nodes.register, { node: spec });
      const state = async (): Promise<{ state: NodeState; reason: string }> => {
        const list = await call(c.clients.nodes, c.clients.nodes.list, {});
        const n = list.nodes.find((x) => x.spec?.name === 'node-1');
        return { state: n?.status?.state ?? NodeState.NODE_STATE_UNSPECIFIED, reason: n?.status?.reason ?? '' };
      };
      const first = await state();
      assert.equal(first.state, NodeState.NODE_STATE_NOT_READY);
      assert.match(first.reason, /no heartbeat/);

      nc = await connect({ servers: nats.url });
      let seq = 0;
      const beat = (): void => {
        seq++;
        nc?.publish('berth.v1.node.node-1.heartbeat', Heartbeat.encode({ node: 'node-1', unixMs: Date.now(), seq, instance: 'test', containers: 0 }).finish());
      };
      beat();
      const timer = setInterval(beat, 1000);
      try {
        await waitFor('node-1 to be Ready', async () => (await state()).state === NodeState.NODE_STATE_READY, 5000);
      } finally {
        clearInterval(timer);
      }
      const lastBeat = Date.now();
      await nc.flush();
      await waitFor('node-1 to be NotReady', async () => (await state()).state === NodeState.NODE_STATE_NOT_READY, 7000, 100);
      const after = Date.now() - lastBeat;
      assert.ok(after <= 6500, `NotReady after ${after} ms; expected within 5 s of the last heartbeat (+ margin)`);
      assert.match((await state()).reason, /^no heartbeat for \d+ s$/);
    });
  });
});
