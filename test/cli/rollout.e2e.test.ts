import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistryWithImages, waitFor, type RegistryWithImages } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';

/** A replica that runs until SIGTERM (sh as PID 1 ignores signals it has no trap for). */
const SERVE = `["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]`;

describe('berth rollout end to end (real etcd, NATS, controller, agent, registry and containers)', function () {
  this.timeout(240_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let image = '';
  let dir = '';

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    assert.ok(image, 'busybox was pushed');
  });
  after(async () => {
    await reg?.stop();
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-test-rollout-e2e-'));
    cluster = await startCluster();
    await cluster.startReadyAgent('node-1');
  });
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (args: string[]): ReturnType<TestCluster['cli']> => {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  };
  const workload = (command: string, version: string): string => {
    const path = join(dir, `web-${version}.yaml`);
    writeFileSync(path, [
      'apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', '  labels:', '    app: web', 'spec:', '  replicas: 2',
      `  image: ${image}`, `  command: ${command}`, '  env:', `    VERSION: "${version}"`, '',
    ].join('\n'));
    return path;
  };

  it('follows a rollout to completion, exits 1 with the reason when a crashing version is rolled back, and restarts every replica', async () => {
    assert.equal((await cli(['apply', '-f', workload(SERVE, '1')])).code, 0);
    const first = await cli(['rollout', 'status', 'web', '--timeout', '120s']);
    assert.equal(first.code, 0, `${first.stdout}${first.stderr}`);
    assert.match(first.stdout, /workload "web" successfully rolled out \(revision 1, 2 replicas ready\)\n$/);

    // A version whose containers exit at once: restarted by the agent until the controller gives up on it.
    const dry = await cli(['apply', '-f', workload('["sh", "-c", "exit 3"]', '2'), '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^-  VERSION: "1"\n\+  VERSION: "2"$/m);
    assert.match(dry.stdout, /^would place web-2 on node-1$/m);
    assert.equal((await cli(['apply', '-f', workload('["sh", "-c", "exit 3"]', '2')])).code, 0);
    const failed = await cli(['rollout', 'status', 'web', '--timeout', '180s']);
    assert.equal(failed.code, 1, `${failed.stdout}${failed.stderr}`);
    assert.match(failed.stderr, /^error: rollout of "web" revision 2 failed and was rolled back \(now revision 3, rollback to 1\): "web-\d-[0-9a-f]{5}" (restarted 3 times|failed to start 3 times)/);
    const history = await cli(['rollout', 'history', 'web']);
    assert.match(history.stdout, /^3\s+rollback to 1: revision 2 failed: /m);

    const restart = await cli(['rollout', 'restart', 'web']);
    assert.deepEqual([restart.code, restart.stdout], [0, 'workload/web restarted (revision 4)\n']);
    const done = await cli(['rollout', 'status', 'web', '--timeout', '120s']);
    assert.equal(done.code, 0, `${done.stdout}${done.stderr}`);
    // Complete means the new replicas are ready; the replaced ones may still be stopping (desired REMOVED) for a moment.
    type Replica = { revision: string | number; desiredState?: string; status?: { state?: string }; spec?: { labels?: Record<string, string> } };
    let last = '';
    await waitFor('only the two restarted replicas to run', async () => {
      last = (await cli(['get', 'replicas', '-o', 'json'])).stdout;
      const running = (JSON.parse(last) as Replica[]).filter((r) => r.status?.state === 'CONTAINER_STATE_RUNNING');
      return running.length === 2 && running.every((r) => Number(r.revision) === 4 && r.spec?.labels?.['io.berth.restarted-at']);
    }, 60_000, 500).catch((err: unknown) => assert.fail(`${err instanceof Error ? err.message : String(err)}\n${last}`));
    const after = (JSON.parse(last) as Replica[]).filter((r) => r.status?.state === 'CONTAINER_STATE_RUNNING');
    assert.ok(after.every((r) => r.desiredState !== 'CONTAINER_STATE_REMOVED'), last);
  });
});
