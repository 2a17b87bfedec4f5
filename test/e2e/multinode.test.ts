/**
 * Multi-node end to end (issue 5, "Done when", first bullet): three agents,
 * each in its own network namespace with its own address, run real busybox
 * containers against real controller processes, etcd, NATS and a registry.
 *
 * Every check polls with generous upper bounds; the only time limit that is
 * a requirement is "replicas of a lost node run elsewhere within 10 s",
 * counted from the node going NotReady (the figures, also from the fault,
 * are printed). Replica counts are asked of the agents themselves
 * (what actually runs), not only of the controller.
 */
import assert from 'node:assert/strict';
import { NodeState, type Container } from '../../proto/gen/berth/v1/types.js';
import { waitFor } from '../harness/index.js';
import { call } from '../controller/helpers.js';
import {
  agentContainers, ip, isRunning, isServing, makeSite, nodeState, runningPerNode, startMultiNodeCluster, waitForNodes,
  type Controller, type MultiNodeCluster, type NodeAgent, type Site,
} from './cluster.js';

const WORKLOAD = 'web';

interface WebOptions {
  replicas: number;
  image: string;
  /** Default: a loop that marks itself ready and exits 0 on SIGTERM. */
  command?: string[];
  maxSurge?: number;
  maxUnavailable?: number;
}

const SERVE = ['sh', '-c', 'trap "exit 0" TERM; touch /tmp/ready; while true; do sleep 1; done'];

/** The workload file: an exec health check every second, restart always. */
function webYaml(o: WebOptions): string {
  return [
    'apiVersion: berth/v1',
    'kind: Workload',
    'metadata:',
    `  name: ${WORKLOAD}`,
    `  labels: { app: ${WORKLOAD} }`,
    'spec:',
    `  replicas: ${o.replicas}`,
    `  image: ${o.image}`,
    `  command: ${JSON.stringify(o.command ?? SERVE)}`,
    '  restart: { policy: always }',
    '  health: { exec: [test, -f, /tmp/ready], intervalSeconds: 1, timeoutSeconds: 2, failureThreshold: 2 }',
    `  update: { maxSurge: ${o.maxSurge ?? 1}, maxUnavailable: ${o.maxUnavailable ?? 0} }`,
    '',
  ].join('\n');
}

function counts(perNode: readonly Container[][]): number[] {
  return perNode.map((l) => l.length);
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/** One look at the whole cluster, taken from the agents. */
interface Sample {
  atMs: number;
  serving: number;
  /** Serving replicas by image reference. */
  byImage: Map<string, number>;
}

/**
 * Samples the agents every ~100 ms until stop(): how many replicas of the
 * workload serve (running and healthy). A sample where an agent does not
 * answer is skipped and counted.
 */
function startSampler(agents: readonly NodeAgent[]): { stop(): Promise<{ samples: Sample[]; skipped: number }> } {
  const samples: Sample[] = [];
  let skipped = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const all = (await Promise.all(agents.map((a) => agentContainers(a, WORKLOAD)))).flat();
        const serving = all.filter(isServing);
        const byImage = new Map<string, number>();
        for (const c of serving) byImage.set(c.spec?.image ?? '', (byImage.get(c.spec?.image ?? '') ?? 0) + 1);
        samples.push({ atMs: Date.now(), serving: serving.length, byImage });
      } catch {
        skipped++;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { samples, skipped };
    },
  };
}

describe('multi-node cluster end to end (3 agents in network namespaces, real containers)', function () {
  this.timeout(300_000);
  let site: Site | undefined;
  let cluster: MultiNodeCluster | undefined;

  before(async function () {
    this.timeout(180_000);
    site = await makeSite(3);
  });
  after(async () => {
    await site?.stop();
    site = undefined;
  });
  afterEach(async () => {
    const c = cluster;
    cluster = undefined;
    await c?.stop();
  });

  async function start(controllers = 1): Promise<MultiNodeCluster> {
    if (!site) throw new Error('no site');
    cluster = await startMultiNodeCluster(site, { controllers });
    return cluster;
  }

  function images(): { v1: string; v2: string } {
    if (!site) throw new Error('no site');
    return site.images;
  }

  async function apply(c: MultiNodeCluster, o: WebOptions, controller?: Controller): Promise<void> {
    const r = await c.cli(['apply', '-f', '-'], { stdin: webYaml(o), controller });
    assert.equal(r.code, 0, `apply failed: ${r.stderr}`);
  }

  /** Waits until the agents together run exactly `total` serving replicas of `image` and nothing else of the workload. */
  async function settled(c: MultiNodeCluster, total: number, image: string, timeoutMs = 120_000): Promise<Container[][]> {
    let last: Container[][] = [];
    await waitFor(`${total} serving replicas of ${image} and nothing else`, async () => {
      const per = await Promise.all(c.agents.map((a) => agentContainers(a, WORKLOAD)));
      last = per.map((l) => l.filter(isRunning));
      const all = per.flat();
      return all.length === total && all.every((x) => isServing(x) && x.spec?.image === image);
    }, timeoutMs, 200).catch((err: Error) => {
      throw new Error(`${err.message}; last seen per node: ${JSON.stringify(last.map((l) => l.map((x) => `${x.name}:${x.spec?.image}:${x.status?.health}`)))}`);
    });
    return last;
  }

  /** The controller's list agrees: `total` running replicas of the workload, distinct ids and replica indices. */
  async function controllerAgrees(c: MultiNodeCluster, total: number, controller?: Controller): Promise<void> {
    const ctl = controller ?? c.controllers[0];
    if (!ctl) throw new Error('no controller');
    await waitFor(`the controller to list ${total} running replicas`, async () => {
      const list = await call(ctl.clients.containers, ctl.clients.containers.list, { all: false, selector: {}, node: '', workload: WORKLOAD });
      return list.containers.length === total && list.containers.every(isRunning);
    }, 30_000, 200);
    const list = await call(ctl.clients.containers, ctl.clients.containers.list, { all: false, selector: {}, node: '', workload: WORKLOAD });
    assert.equal(new Set(list.containers.map((x) => x.id)).size, total, 'distinct container ids');
    assert.equal(new Set(list.containers.map((x) => x.replica)).size, total, 'distinct replica indices');
  }

  /** No duplicates across the agents: distinct ids and replica indices among running replicas. */
  function assertNoDuplicates(per: readonly Container[][]): void {
    const all = per.flat();
    assert.equal(new Set(all.map((x) => x.id)).size, all.length, 'a container id runs twice');
    assert.equal(new Set(all.map((x) => x.replica)).size, all.length, `a replica index runs twice: ${all.map((x) => x.name).join(', ')}`);
  }

  it('spreads 6 replicas 2/2/2 over three nodes', async () => {
    const c = await start();
    await apply(c, { replicas: 6, image: images().v1 });
    const per = await settled(c, 6, images().v1);
    assert.deepEqual(counts(per), [2, 2, 2]);
    assertNoDuplicates(per);
    await controllerAgrees(c, 6);
    const nodes = await c.cli(['get', 'nodes']);
    assert.equal(nodes.code, 0, nodes.stderr);
    for (const a of c.agents) assert.match(nodes.stdout, new RegExp(`^${a.name}\\s+Ready`, 'm'));
  });

  it('scales 6 -> 2 -> 5 keeping the replicas spread', async () => {
    const c = await start();
    await apply(c, { replicas: 6, image: images().v1 });
    assert.deepEqual(counts(await settled(c, 6, images().v1)), [2, 2, 2]);

    const down = await c.cli(['scale', WORKLOAD, '--replicas', '2']);
    assert.equal(down.code, 0, down.stderr);
    const two = await settled(c, 2, images().v1);
    assert.deepEqual([...counts(two)].sort(), [0, 1, 1], `per node: ${JSON.stringify(counts(two))}`);
    await controllerAgrees(c, 2);

    const up = await c.cli(['scale', WORKLOAD, '--replicas', '5']);
    assert.equal(up.code, 0, up.stderr);
    const five = await settled(c, 5, images().v1);
    assert.deepEqual([...counts(five)].sort(), [1, 2, 2], `per node: ${JSON.stringify(counts(five))}`);
    assertNoDuplicates(five);
    await controllerAgrees(c, 5);
  });

  it('rolls out a new image keeping at least replicas - maxUnavailable serving at every sample', async () => {
    const c = await start();
    const { v1, v2 } = images();
    await apply(c, { replicas: 6, image: v1, maxSurge: 1, maxUnavailable: 1 });
    await settled(c, 6, v1);

    const sampler = startSampler(c.agents);
    let result: { samples: Sample[]; skipped: number };
    try {
      await apply(c, { replicas: 6, image: v2, maxSurge: 1, maxUnavailable: 1 });
      const [status, per] = await Promise.all([
        c.cli(['rollout', 'status', WORKLOAD, '--timeout', '3m'], { timeoutMs: 200_000 }),
        settled(c, 6, v2),
      ]);
      assertNoDuplicates(per);
      assert.equal(status.code, 0, `rollout status: ${status.stdout}${status.stderr}`);
      assert.match(status.stdout, /workload "web" successfully rolled out \(revision 2, 6 replicas ready\)\n$/);
    } finally {
      result = await sampler.stop();
    }
    const { samples, skipped } = result;
    const min = Math.min(...samples.map((s) => s.serving));
    const mixed = samples.filter((s) => (s.byImage.get(v1) ?? 0) > 0 && (s.byImage.get(v2) ?? 0) > 0).length;
    process.stderr.write(`      rolling update: ${samples.length} samples (${skipped} skipped), ${mixed} with both images serving, fewest serving ${min}\n`);
    assert.ok(samples.length >= 10, `only ${samples.length} samples`);
    assert.ok(mixed >= 1, 'no sample saw the rollout in progress (both images serving)');
    assert.ok(min >= 6 - 1, `a sample had only ${min} serving replicas: ${JSON.stringify(samples.filter((s) => s.serving < 5).map((s) => [...s.byImage]))}`);
    await controllerAgrees(c, 6);
    const history = await c.cli(['rollout', 'history', WORKLOAD]);
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, new RegExp(`^2\\s.*${v2.replace(/[.]/g, '\\.')}`, 'm'));
  });

  const broken = {
    'its process exits 1': ['sh', '-c', 'echo broken version; exit 1'],
    'its binary does not exist': ['/no/such/binary'],
  } as const;
  for (const [variant, command] of Object.entries(broken)) {
    it(`rolls a broken version back by itself and records why (${variant})`, async () => {
      const c = await start();
      const { v1, v2 } = images();
      await apply(c, { replicas: 6, image: v1 });
      await settled(c, 6, v1);

      const sampler = startSampler(c.agents);
      let result: { samples: Sample[]; skipped: number };
      try {
        // The new version never becomes ready (it exits at once, or cannot start): it restarts or fails to start, and the rollout is rolled back.
        await apply(c, { replicas: 6, image: v2, command: [...command] });
        const status = await c.cli(['rollout', 'status', WORKLOAD, '--timeout', '3m'], { timeoutMs: 200_000 });
        assert.equal(status.code, 1, `rollout status: ${status.stdout}${status.stderr}`);
        assert.match(status.stderr, /rollout of "web" revision 2 failed and was rolled back \(now revision 3, rollback to 1\)/);
        const ctl = c.controllers[0] as Controller;
        await waitFor('a RolledBack event', async () => {
          const ev = await call(ctl.clients.events, ctl.clients.events.list, { sinceUnixMs: 0, limit: 0, workload: WORKLOAD, kind: '' });
          return ev.events.some((e) => e.reason === 'RolledBack');
        }, 120_000, 500);
        // Back on v1 with the serving command: six v1 replicas and nothing of v2.
        await settled(c, 6, v1);
      } finally {
        result = await sampler.stop();
      }
      // maxUnavailable 0: the v1 replicas kept serving throughout.
      const min = Math.min(...result.samples.map((s) => s.serving));
      assert.ok(min >= 6, `a sample had only ${min} serving replicas`);

      const describe = await c.cli(['describe', 'workload', WORKLOAD]);
      assert.equal(describe.code, 0, describe.stderr);
      assert.match(describe.stdout, /RolledBack\s.*rolled back revision 2 to revision 1 \(now revision 3\): "web-\d+-[0-9a-f]+" (restarted \d+ times|failed to start \d+ times)/);
      const history = await c.cli(['rollout', 'history', WORKLOAD]);
      assert.equal(history.code, 0, history.stderr);
      assert.match(history.stdout, /^3\s+rollback to 1\b.*\/busybox:v1\s/m);
      await controllerAgrees(c, 6);
    });
  }

  for (const variant of ['kill -9 of its agent', 'its link cut'] as const) {
    it(`runs a lost node's replicas elsewhere within 10 s (${variant}) and removes the duplicates when it returns`, async () => {
      const c = await start();
      const { v1 } = images();
      await apply(c, { replicas: 6, image: v1 });
      assert.deepEqual(counts(await settled(c, 6, v1)), [2, 2, 2]);
      const lost = c.agents[2] as NodeAgent;
      const others = c.agents.slice(0, 2);
      const movedAway = (await agentContainers(lost, WORKLOAD)).map((x) => x.id);

      const t0 = Date.now();
      if (variant === 'kill -9 of its agent') await lost.proc?.kill9();
      else await ip(['link', 'set', lost.host.veth, 'down']);
      await waitForNodes(c, (nodes) => nodeState(nodes, lost.name) === NodeState.NODE_STATE_NOT_READY, `${lost.name} NotReady`, 30_000);
      const detected = Date.now();
      await waitFor('6 replicas running on the two other nodes', async () => sum(counts(await runningPerNode(others, WORKLOAD))) === 6, 10_000, 100);
      const replaced = Date.now();
      process.stderr.write(`      ${variant}: NotReady after ${detected - t0} ms, replicas running elsewhere ${replaced - detected} ms later (${replaced - t0} ms after the fault)\n`);
      assert.ok(replaced - detected <= 10_000);

      // The node returns: its old replicas kept running meanwhile, and are removed.
      if (variant === 'kill -9 of its agent') await c.startAgent(lost, c.controllers[0] as Controller);
      else await ip(['link', 'set', lost.host.veth, 'up']);
      await waitForNodes(c, (nodes) => nodeState(nodes, lost.name) === NodeState.NODE_STATE_READY, `${lost.name} Ready again`, 60_000);
      await waitFor(`${lost.name} to remove the replicas moved away`, async () => {
        const left = await agentContainers(lost, WORKLOAD);
        return !left.some((x) => movedAway.includes(x.id));
      }, 60_000, 200);
      const per = await settled(c, 6, v1);
      assertNoDuplicates(per);
      await controllerAgrees(c, 6);
      // The decisions are recorded: the node's loss and each replacement.
      const events = await c.cli(['events', '--limit', '1000', '-o', 'json']);
      assert.equal(events.code, 0, events.stderr);
      const list = JSON.parse(events.stdout) as { reason?: string; node?: string; name?: string }[];
      assert.ok(list.some((e) => e.reason === 'NodeNotReady' && (e.node === lost.name || e.name === lost.name)), `no NodeNotReady event for ${lost.name}: ${events.stdout}`);
      assert.equal(list.filter((e) => e.reason === 'Rescheduled' && e.node === lost.name).length, movedAway.length, events.stdout);
    });
  }

  it('re-adopts the running containers when an agent is killed with -9 and started again, with no duplicates', async () => {
    const c = await start();
    const { v1 } = images();
    await apply(c, { replicas: 6, image: v1 });
    assert.deepEqual(counts(await settled(c, 6, v1)), [2, 2, 2]);
    const a = c.agents[0] as NodeAgent;
    const before = new Map((await agentContainers(a, WORKLOAD)).map((x) => [x.id, x.status?.pid ?? 0]));
    await a.proc?.kill9();
    await c.startAgent(a, c.controllers[0] as Controller);
    await waitForNodes(c, (nodes) => nodeState(nodes, a.name) === NodeState.NODE_STATE_READY, `${a.name} Ready`, 60_000);
    const per = await settled(c, 6, v1);
    assertNoDuplicates(per);
    await controllerAgrees(c, 6);
    const events = await c.cli(['events', '--limit', '1000', '-o', 'json']);
    const lost = (JSON.parse(events.stdout) as { reason?: string; name?: string }[]).some((e) => e.reason === 'NodeNotReady' && e.name === a.name);
    if (!lost) {
      // The agent came back before the node was NotReady: the same containers, the same processes, nothing moved.
      const after = new Map((await agentContainers(a, WORKLOAD)).map((x) => [x.id, x.status?.pid ?? 0]));
      assert.deepEqual(after, before, 'the re-adopted containers are the ones that ran before, with the same pids');
    }
    process.stderr.write(`      agent restart: node ${lost ? 'went NotReady first (replicas moved)' : 'stayed Ready; its containers were re-adopted'}\n`);
  });

  it('converges to the new revision when a node is lost half-way through a rolling update, and removes its leftovers when it returns', async () => {
    const c = await start();
    const { v1, v2 } = images();
    await apply(c, { replicas: 6, image: v1, maxSurge: 1, maxUnavailable: 0 });
    assert.deepEqual(counts(await settled(c, 6, v1)), [2, 2, 2]);
    const lost = c.agents[1] as NodeAgent;
    await apply(c, { replicas: 6, image: v2, maxSurge: 1, maxUnavailable: 0 });
    await waitFor('the rollout half-way (2 replicas of v2 serving)', async () => (await Promise.all(c.agents.map((a) => agentContainers(a, WORKLOAD)))).flat().filter((x) => x.spec?.image === v2 && isServing(x)).length >= 2, 60_000, 100);
    const leftThere = (await agentContainers(lost, WORKLOAD)).map((x) => x.id);
    await lost.proc?.kill9();
    await waitForNodes(c, (nodes) => nodeState(nodes, lost.name) === NodeState.NODE_STATE_NOT_READY, `${lost.name} NotReady`, 30_000);
    const others = [c.agents[0] as NodeAgent, c.agents[2] as NodeAgent];
    let seen = '';
    await waitFor('6 replicas of v2 serving on the two other nodes', async () => {
      const all = (await Promise.all(others.map((a) => agentContainers(a, WORKLOAD)))).flat();
      seen = all.map((x) => `${x.name}@${x.node}:${x.spec?.image.split('/').pop()}:${x.status?.state}:${x.status?.health}`).join(', ');
      return all.length === 6 && all.every((x) => isServing(x) && x.spec?.image === v2);
    }, 120_000, 200).catch(async (err: Error) => {
      const d = await c.cli(['describe', 'workload', WORKLOAD]);
      throw new Error(`${err.message}\nagents run: ${seen}\n${d.stdout}${d.stderr}`);
    });
    const status = await c.cli(['rollout', 'status', WORKLOAD, '--timeout', '2m'], { timeoutMs: 150_000 });
    // Starts that failed on the dead node (before it was NotReady) are not the new revision's fault: no rollback.
    const failures = (await c.cli(['events', '--limit', '1000'])).stdout.split('\n').filter((l) => /StartFailed|RolledBack/.test(l)).join('\n');
    assert.equal(status.code, 0, `rollout status: ${status.stdout}${status.stderr}\n${failures}`);
    assert.doesNotMatch(failures, /RolledBack/);

    await c.startAgent(lost, c.controllers[0] as Controller);
    await waitFor(`${lost.name} to remove what it ran before`, async () => !(await agentContainers(lost, WORKLOAD)).some((x) => leftThere.includes(x.id)), 60_000, 200);
    const per = await settled(c, 6, v2);
    assertNoDuplicates(per);
    await controllerAgrees(c, 6);
  });

  it('drains a node: its replicas move away while the workload keeps serving', async () => {
    const c = await start();
    const { v1 } = images();
    await apply(c, { replicas: 6, image: v1, maxSurge: 1, maxUnavailable: 0 });
    assert.deepEqual(counts(await settled(c, 6, v1)), [2, 2, 2]);
    const sampler = startSampler(c.agents);
    let result: { samples: Sample[]; skipped: number };
    let per: Container[][];
    try {
      const t0 = Date.now();
      const drain = await c.cli(['node', 'drain', 'host-0']);
      assert.equal(drain.code, 0, drain.stderr);
      assert.equal(drain.stdout, 'node/host-0 draining\n');
      await waitFor('host-0 to run nothing of the workload', async () => (await agentContainers(c.agents[0] as NodeAgent, WORKLOAD)).length === 0, 120_000, 200);
      per = await settled(c, 6, v1);
      process.stderr.write(`      drain: host-0 empty and 6 serving on the others ${Date.now() - t0} ms after the drain command\n`);
    } finally {
      result = await sampler.stop();
    }
    assert.deepEqual(counts(per), [0, 3, 3]);
    assertNoDuplicates(per);
    const min = Math.min(...result.samples.map((s) => s.serving));
    assert.ok(min >= 6, `a sample had only ${min} serving replicas (maxUnavailable 0)`);
    const nodes = await c.cli(['get', 'nodes']);
    assert.match(nodes.stdout, /^host-0\s+\S*Cordoned/m);
    // A cordoned node gets nothing new: scaling up lands on the other two.
    assert.equal((await c.cli(['scale', WORKLOAD, '--replicas', '8'])).code, 0);
    assert.deepEqual(counts(await settled(c, 8, v1)), [0, 4, 4]);
  });

  it('lets the other controller finish a rollout after the leader is killed with -9', async () => {
    const c = await start(2);
    const [leader, other] = c.controllers as [Controller, Controller];
    const { v1, v2 } = images();
    await apply(c, { replicas: 6, image: v1, maxSurge: 1, maxUnavailable: 0 });
    await settled(c, 6, v1);

    // maxSurge 1, maxUnavailable 0: one replica at a time, each waiting to be healthy, so the rollout takes several seconds.
    await apply(c, { replicas: 6, image: v2, maxSurge: 1, maxUnavailable: 0 }, other);
    // `rollout status` follows the rollout through the failover (asking the surviving controller).
    const following = c.cli(['rollout', 'status', WORKLOAD, '--timeout', '3m'], { controller: other, timeoutMs: 200_000 });
    await waitFor('the rollout half-way (2 replicas of v2 serving)', async () => (await Promise.all(c.agents.map((a) => agentContainers(a, WORKLOAD)))).flat().filter((x) => x.spec?.image === v2 && isServing(x)).length >= 2, 60_000, 100);
    await leader.proc.kill9();
    const killedAt = Date.now();
    const left = (await Promise.all(c.agents.map((a) => agentContainers(a, WORKLOAD)))).flat().filter((x) => x.spec?.image === v1 && isRunning(x)).length;
    assert.ok(left >= 1, 'the leader died before the rollout finished');
    await waitFor(`${other.id} to lead`, async () => (await call(other.clients.system, other.clients.system.version, {})).leader, 30_000, 200);
    const ledAt = Date.now();
    const per = await settled(c, 6, v2);
    const doneAt = Date.now();
    const status = await following;
    assert.equal(status.code, 0, `rollout status: ${status.stdout}${status.stderr}`);
    assert.match(status.stdout, /workload "web" successfully rolled out \(revision 2, 6 replicas ready\)\n$/);
    assertNoDuplicates(per);
    await controllerAgrees(c, 6, other);
    process.stderr.write(`      leader killed with ${left} v1 replica(s) left; ${other.id} led ${ledAt - killedAt} ms later and finished the rollout ${doneAt - killedAt} ms after the kill\n`);
  });
});
