/**
 * Rollouts end to end with real etcd and NATS, the controller's real
 * components and three fake agents: WorkloadService.RolloutStatus, Undo,
 * Restart and dry-run previews, through the gRPC API and through the `berth`
 * CLI (in process); and how a lost node's containers are listed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import { waitFor } from '../../harness/index.js';
import { PassThrough, Readable } from 'node:stream';
import { runCli } from '../../../cli/main.js';
import { cleanEnv, cliInProcess, type CliResult } from '../../cli/helpers.js';
import { call, grpcError, manifest, type Clients, useEtcdAndNats } from '../helpers.js';
import type { FakeAgent } from './fake-agent.js';
import type { TestController } from './controller.js';
import { startFakeCluster, type FakeCluster } from './fake-cluster.js';
import { restartedAtLabelValue } from '../../../controller/reconcile/index.js';

describe('rollouts with fake agents', function () {
  this.timeout(120_000);
  const svc = useEtcdAndNats();
  let ctl: TestController | undefined;
  let c: Clients | undefined;
  let agents: FakeAgent[] = [];
  let fc: FakeCluster | undefined;
  let dir = '';

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-test-rollout-'));
    fc = await startFakeCluster(svc.etcd, svc.nats, svc.raw);
    ({ ctl, clients: c, agents } = fc);
  });
  afterEach(async () => {
    await fc?.stop();
    fc = undefined;
    c = undefined;
    agents = [];
    ctl = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const clients = (): Clients => c as Clients;
  const apply = (text: string) => call(clients().workloads, clients().workloads.apply, { manifest: text, source: 'test.yaml', dryRun: false });
  const status = (name: string) => call(clients().workloads, clients().workloads.rolloutStatus, { name });
  const undo = (name: string, toRevision = 0) => call(clients().workloads, clients().workloads.undo, { name, toRevision });
  const total = (): number => agents.reduce((n, a) => n + a.runningCount(), 0);
  const images = (): string[] => agents.flatMap((a) => [...a.containers.values()].map((x) => x.spec?.image ?? '')).sort();
  const berth = (args: string[]): Promise<CliResult> => cliInProcess(['--controller', (ctl as TestController).address, ...args]);
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const complete = (name: string, revision: number) => waitFor(`rollout of ${name} revision ${revision} complete`, async () => {
    const p = await status(name);
    return p.complete && p.revision === revision;
  }, 20_000);

  it('follows a rolling update until it completes (berth rollout status exits 0)', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' }));
    await complete('web', 1);
    const before = await status('web');
    assert.deepEqual([before.desired, before.updated, before.updatedReady, before.available, before.old, before.cause], [3, 3, 3, 3, 0, 'apply']);

    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:2' }));
    const r = await berth(['rollout', 'status', 'web', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^workload "web" successfully rolled out \(revision 2, 3 replicas ready\)$/m);
    assert.doesNotMatch(r.stdout, /revision 1/);
    // Complete means no old replica is wanted any more (as Kubernetes, terminating ones are not counted); they go soon after.
    await waitFor('only web:2 containers left', () => images().join() === Array(3).fill('127.0.0.1:5000/web:2').join(), 15_000);
    const once = await berth(['rollout', 'status', 'web', '--watch=false']);
    assert.deepEqual([once.code, once.stdout], [0, 'workload "web" successfully rolled out (revision 2, 3 replicas ready)\n']);
    await assert.rejects(status('ghost'), grpcError(grpc.status.NOT_FOUND, /workload "ghost" not found/));
    const unknown = await berth(['rollout', 'status', 'ghost']);
    assert.deepEqual([unknown.code, unknown.stderr], [1, 'error: workload "ghost" not found\n']);
  });

  it('follows on to a newer revision applied while it waits', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' }));
    await complete('web', 1);
    // Revision 2 cannot be placed anywhere, so its rollout waits until revision 3 replaces it.
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:2', extra: '  placement:\n    nodeSelector:\n      zone: mars' }));
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d: Buffer) => (out += d.toString()));
    stderr.on('data', (d: Buffer) => (err += d.toString()));
    const done = runCli(['--controller', (ctl as TestController).address, 'rollout', 'status', 'web', '--timeout', '60s'], { stdout, stderr, stdin: Readable.from(['']), env: cleanEnv() });
    await waitFor('status following revision 2', () => /^revision 2: .*pending/m.test(out), 15_000);
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:3' }));
    assert.equal(await done, 0, `${out}${err}`);
    assert.match(out, /^revision 2 was replaced by revision 3 \(apply\); following revision 3$/m);
    assert.match(out, /workload "web" successfully rolled out \(revision 3, 3 replicas ready\)\n$/);
  });

  it('exits 1 with the recorded reason when a broken image is rolled back', async () => {
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' }));
    await complete('web', 1);
    await apply(manifest('web', { replicas: 3, image: '127.0.0.1:5000/missing:2' }));
    const r = await berth(['rollout', 'status', 'web', '--timeout', '60s']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /^error: rollout of "web" revision 2 failed and was rolled back \(now revision 3, rollback to 1\): "web-\d-[0-9a-f]{5}" failed to start 3 times\n$/);
    const p = await status('web');
    assert.deepEqual([p.revision, p.rolledBackRevision], [3, 2]);
    assert.match(p.rollbackReason, /^"web-\d-[0-9a-f]{5}" failed to start 3 times$/);
    // Asked again after the rollback, it still reports the failed rollout.
    const again = await berth(['rollout', 'status', 'web']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /revision 2 failed and was rolled back/);
    await complete('web', 3);
    await waitFor('only web:1 containers left', () => images().join() === Array(3).fill('127.0.0.1:5000/web:1').join(), 15_000);
  });

  it('exits 1 when the timeout passes, naming what it waits for', async () => {
    await apply(manifest('far', { replicas: 2, image: '127.0.0.1:5000/web:1', extra: '  placement:\n    nodeSelector:\n      zone: mars' }));
    await waitFor('pending recorded', async () => (await status('far')).pending === 2, 15_000);
    const r = await berth(['rollout', 'status', 'far', '--timeout', '1500ms']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^revision 1: 0 of 2 updated, 0 ready, 0 available; 2 pending \(0\/3 nodes: 3 /m);
    assert.match(r.stderr, /^error: timed out after 1500ms waiting for the rollout of "far" revision 1 \(0 of 2 updated, 0 ready, 0 available; 2 pending/);
    const once = await berth(['rollout', 'status', 'far', '-w', 'false']);
    assert.equal(once.code, 0, once.stderr);
    for (const bad of [['--timeout', 'soon'], ['--watch=maybe']]) {
      const u = await berth(['rollout', 'status', 'far', ...bad]);
      assert.equal(u.code, 2, bad.join(' '));
      assert.match(u.stderr, /^error: --(timeout|watch): expected /);
    }
  });

  it('undoes to the previous spec or a named revision, and refuses a missing or current revision', async () => {
    await apply(manifest('web', { replicas: 2, image: '127.0.0.1:5000/web:1' }));
    await assert.rejects(undo('web'), grpcError(grpc.status.FAILED_PRECONDITION, /^failed to undo "web": no earlier revision with a different spec is kept \(revisions kept: 1\)/));
    await apply(manifest('web', { replicas: 2, image: '127.0.0.1:5000/web:2' }));
    await complete('web', 2);
    const res = await undo('web');
    assert.deepEqual([res.toRevision, res.workload?.status?.revision, res.workload?.spec?.image], [1, 3, '127.0.0.1:5000/web:1']);
    await complete('web', 3);
    await waitFor('only web:1 containers left', () => images().join() === Array(2).fill('127.0.0.1:5000/web:1').join(), 15_000);

    await assert.rejects(undo('web', 3), grpcError(grpc.status.FAILED_PRECONDITION, /^failed to undo "web" to revision 3: it is the current revision; expected an earlier one/));
    await assert.rejects(undo('web', 42), grpcError(grpc.status.NOT_FOUND, /^failed to undo "web" to revision 42: no such revision; expected one of the revisions kept: 1, 2, 3$/));
    await assert.rejects(undo('web', 1), grpcError(grpc.status.FAILED_PRECONDITION, /revision 1: its spec is the current one \(revision 3\) apart from replicas; nothing to undo/));
    await assert.rejects(undo('ghost'), grpcError(grpc.status.NOT_FOUND, /workload "ghost" not found/));

    const cli = await berth(['rollout', 'undo', 'web', '--to-revision', '2']);
    assert.deepEqual([cli.code, cli.stdout], [0, 'workload/web rolled back to revision 2 (now revision 4)\n']);
    const history = await call(clients().workloads, clients().workloads.history, { name: 'web' });
    assert.deepEqual(history.revisions.map((h) => h.cause), ['apply', 'apply', 'undo to 1', 'undo to 2']);
    const missing = await berth(['rollout', 'undo', 'web', '--to-revision', '42']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^error: failed to undo "web" to revision 42: no such revision; expected one of the revisions kept: 1, 2, 3, 4\n$/);
    const bad = await berth(['rollout', 'undo', 'web', '--to-revision', 'two']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: --to-revision: expected a revision number/);
    await complete('web', 4);
  });

  it('restarts every replica by a rolling update, and applying the same file again restarts nothing', async () => {
    const text = manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:1' });
    await apply(text);
    await complete('web', 1);
    const first = new Set(agents.flatMap((a) => [...a.containers.keys()]));
    let lowest = Infinity;
    const poll = setInterval(() => (lowest = Math.min(lowest, total())), 2);
    try {
      const r = await berth(['rollout', 'restart', 'web']);
      assert.deepEqual([r.code, r.stdout], [0, 'workload/web restarted (revision 2)\n']);
      await complete('web', 2);
      await waitFor('old replicas gone', () => agents.every((a) => [...a.containers.keys()].every((id) => !first.has(id))) && total() === 3, 15_000);
    } finally {
      clearInterval(poll);
    }
    assert.ok(lowest >= 3, `running replicas dropped to ${lowest} during the restart (maxUnavailable 0)`);
    const w = await call(clients().workloads, clients().workloads.get, { name: 'web' });
    assert.ok((w.spec?.restartedUnixMs ?? 0) > 0);
    const labels = agents.flatMap((a) => [...a.containers.values()].map((x) => x.spec?.labels['io.berth.restarted-at'] ?? ''));
    assert.deepEqual(labels, Array(3).fill(restartedAtLabelValue(w.spec?.restartedUnixMs ?? 0)));
    const again = await apply(text);
    assert.deepEqual(again.results.map((x) => [x.action, x.revision]), [['unchanged', 2]]);
    const history = await call(clients().workloads, clients().workloads.history, { name: 'web' });
    assert.deepEqual(history.revisions.map((h) => h.cause), ['apply', 'restart']);
    const ghost = await berth(['rollout', 'restart', 'ghost']);
    assert.deepEqual([ghost.code, ghost.stderr], [1, 'error: workload "ghost" not found\n']);
  });

  it('shows the spec diff and where new replicas would go on apply --dry-run, changing nothing', async () => {
    await apply(manifest('web', { replicas: 2, image: '127.0.0.1:5000/web:1' }));
    await complete('web', 1);
    const path = file('web.yaml', manifest('web', { replicas: 3, image: '127.0.0.1:5000/web:2' }));
    const r = await berth(['apply', '-f', path, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.equal(lines[0], 'workload/web configured (dry run)');
    assert.equal(lines[1], '--- workload/web (stored)');
    assert.equal(lines[2], '+++ workload/web (after apply)');
    assert.match(lines[3] ?? '', /^@@ -1,\d+ \+1,\d+ @@$/);
    for (const l of ['-replicas: 2', '+replicas: 3', '-image: 127.0.0.1:5000/web:1', '+image: 127.0.0.1:5000/web:2', ' restart:']) assert.ok(lines.includes(l), `diff has ${l}\n${r.stdout}`);
    assert.ok(lines.includes('would replace 2 replicas by a rolling update (maxSurge 1, maxUnavailable 0); first step:'), r.stdout);
    const placed = lines.filter((l) => l.startsWith('would place '));
    assert.equal(placed.length, 2, r.stdout);
    assert.ok(placed.every((l) => /^would place web-[2-3] on n[1-3]$/.test(l)), r.stdout);
    assert.doesNotMatch(r.stdout, /\u001b\[/, 'no color when stdout is not a terminal');

    const json = await berth(['apply', '-f', path, '--dry-run', '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { name: string; action: string; preview: { previous: { image: string }; spec: { image: string }; place: { name: string; node: string }[]; replace: number } }[];
    assert.deepEqual([parsed[0]?.name, parsed[0]?.action, parsed[0]?.preview.previous.image, parsed[0]?.preview.spec.image, parsed[0]?.preview.replace, parsed[0]?.preview.place.length], ['web', 'configured', '127.0.0.1:5000/web:1', '127.0.0.1:5000/web:2', 2, 2]);

    const far = file('far.yaml', manifest('far', { replicas: 3, image: '127.0.0.1:5000/web:1', extra: '  placement:\n    nodeSelector:\n      zone: mars' }));
    const pending = await berth(['apply', '-f', far, '--dry-run']);
    assert.equal(pending.code, 0, pending.stderr);
    assert.match(pending.stdout, /^workload\/far created \(dry run\)\n--- \/dev\/null\n\+\+\+ workload\/far \(after apply\)\n@@ -0,0 \+1,\d+ @@\n\+replicas: 3\n/);
    assert.match(pending.stdout, /^3 replicas would stay pending: 0\/3 nodes: 3 /m);

    // Nothing changed: still revision 1 with the two replicas of web:1, and no "far".
    const w = await call(clients().workloads, clients().workloads.get, { name: 'web' });
    assert.deepEqual([w.status?.revision, w.spec?.replicas, w.spec?.image], [1, 2, '127.0.0.1:5000/web:1']);
    assert.equal((await ctl?.store.listContainerRecords({}))?.length, 2);
    await assert.rejects(call(clients().workloads, clients().workloads.get, { name: 'far' }), grpcError(grpc.status.NOT_FOUND, /workload "far" not found/));
    const badFormat = await berth(['apply', '-f', path, '--dry-run', '-o', 'yaml']);
    assert.equal(badFormat.code, 2);
  });

  it('lists a lost node\'s containers as Unknown beside their replacements and counts only the running ones', async () => {
    await apply(manifest('web', { replicas: 6, image: '127.0.0.1:5000/web:1', extra: '  resources:\n    cpu: 100m\n    memory: 16Mi' }));
    await complete('web', 1);
    const n3 = agents[2] as FakeAgent;
    const lostIds = new Set(n3.containers.keys());
    assert.equal(lostIds.size, 2);
    n3.pause();
    await waitFor('replicas re-placed on n1 and n2', () => (agents[0]?.runningCount() ?? 0) + (agents[1]?.runningCount() ?? 0) === 6, 15_000);
    await complete('web', 1);

    const list = await call(clients().containers, clients().containers.list, { all: false, selector: {}, node: '', workload: 'web' });
    const unknown = list.containers.filter((x) => x.status?.state === ContainerState.CONTAINER_STATE_UNKNOWN);
    assert.deepEqual(new Set(unknown.map((x) => x.id)), lostIds);
    assert.ok(unknown.every((x) => x.node === 'n3' && x.status?.reason === 'NodeLost' && /^node "n3" is not ready: no heartbeat for \d+ s/.test(x.status.message)), JSON.stringify(unknown.map((x) => x.status)));
    assert.equal(list.containers.filter((x) => x.status?.state === ContainerState.CONTAINER_STATE_RUNNING).length, 6);
    assert.ok(list.containers.filter((x) => x.status?.state === ContainerState.CONTAINER_STATE_RUNNING).every((x) => x.node !== 'n3'));

    // The reconciler's stored status (get workloads, describe) counts the six running replicas, not the lost two.
    await waitFor('status 6 running, 6 ready', async () => {
      const w = await call(clients().workloads, clients().workloads.get, { name: 'web' });
      return w.status?.running === 6 && w.status.ready === 6;
    }, 10_000);
    const replicas = await berth(['get', 'replicas', '-l', 'app=web']);
    assert.equal(replicas.code, 0, replicas.stderr);
    assert.equal(replicas.stdout.split('\n').filter((l) => /\sn3\s+unknown\s/.test(l)).length, 2, replicas.stdout);
    assert.equal(replicas.stdout.split('\n').filter((l) => /\sn[12]\s+running\s/.test(l)).length, 6, replicas.stdout);
    const describe = await berth(['describe', 'workload', 'web']);
    assert.match(describe.stdout, /6 desired, 6 running, 6 ready/);

    // get nodes: what the placed replicas request of each node, and how many each runs.
    const { nodes } = await call(clients().nodes, clients().nodes.list, {});
    const perNode = Object.fromEntries(nodes.map((n) => [n.spec?.name, [n.status?.replicas, n.status?.allocated?.cpuMillis]]));
    assert.deepEqual(perNode, { n1: [3, 300], n2: [3, 300], n3: [0, 0] });
    const table = await berth(['get', 'nodes']);
    assert.match(table.stdout, /^NAME\s+STATUS\s+ADDRESS\s+CPU\s+MEMORY\s+PIDS\s+REPLICAS\s+LABELS\s+AGE\s+VERSION$/m);
    assert.match(table.stdout, /^n1\s+Ready\s+\S+\s+300m\/4\s+48Mi\/8Gi\s+0\/10000\s+3\s/m);
    assert.match(table.stdout, /^n3\s+NotReady\s+\S+\s+0\/4\s+0\/8Gi\s+0\/10000\s+0\s/m);
  });
});
