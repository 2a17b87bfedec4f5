/** The real ContainerManager over hollow parts (what scale benchmarks run): lifecycle, restarts, re-adoption of records. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../lib/index.js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import { ContainerManager, type ContainerEvent } from '../../../agent/containers/index.js';
import { hollowParts } from './hollow.js';
import { runRequest } from './grpc.js';
import { eventually, newId } from './stack.js';

describe('ContainerManager (hollow parts)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-agentw-hollow-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs 200 containers at once, reports each change, and stops and removes them', async () => {
    const parts = hollowParts();
    const m = new ContainerManager({ node: 'h1', root: dir, logger: silentLogger(), ...parts });
    await m.recover();
    const events: ContainerEvent[] = [];
    m.watch((e) => events.push(e));
    const ids = Array.from({ length: 200 }, () => newId());
    const started = await Promise.all(ids.map((id, i) => m.run(runRequest(id, 'registry.test/img:1', {}, { workload: 'w', replica: i }))));
    assert.ok(started.every((c) => c.status?.state === ContainerState.CONTAINER_STATE_RUNNING));
    assert.equal(m.count, 200);
    assert.equal(events.filter((e) => e.container?.status?.state === ContainerState.CONTAINER_STATE_RUNNING).length, 200);
    const stopped = await m.stop(ids[0]!, { graceMs: 10 });
    assert.equal(stopped.status?.exitCode, 143);
    await Promise.all(ids.map((id) => m.remove(id, { force: true })));
    assert.equal(m.count, 0);
    assert.equal(events.filter((e) => e.removed !== undefined).length, 200);
    m.close();
  });

  it('restarts under always and a new manager over the same root re-adopts the running containers', async () => {
    const parts = hollowParts();
    const m = new ContainerManager({ node: 'h1', root: dir, logger: silentLogger(), ...parts, initialBackoffMs: 10 });
    await m.recover();
    const id = newId();
    await m.run(runRequest(id, 'registry.test/img:1', { restart: { policy: 'always', backoffCapSeconds: 1 } }));
    await parts.runtime.kill(`${id}.0`, 'SIGKILL');
    await eventually('a restart', () => (m.get(id).status?.restartCount === 1 && m.get(id).status?.state === ContainerState.CONTAINER_STATE_RUNNING ? true : undefined));
    m.close();
    const again = new ContainerManager({ node: 'h1', root: dir, logger: silentLogger(), ...parts, runtime: parts.runtime });
    await again.recover();
    assert.equal(again.get(id).status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.equal(again.get(id).status?.restartCount, 1);
    await again.remove(id, { force: true });
    again.close();
  });
});
