/** ContainerReporter over the real ContainerManager (hollow parts): deltas gathered per node, full reports. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../lib/index.js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import type { ContainerReport } from '../../../proto/gen/berth/v1/status.js';
import { ContainerManager } from '../../../agent/containers/index.js';
import { ContainerReporter, MAX_DELTA_CONTAINERS } from '../../../agent/status/index.js';
import { hollowParts } from '../containers/hollow.js';
import { runRequest } from '../containers/grpc.js';
import { eventually, newId } from '../containers/stack.js';

describe('ContainerReporter', () => {
  let dir: string;
  let manager: ContainerManager | undefined;
  let reporter: ContainerReporter | undefined;
  let sent: ContainerReport[];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-scale-reports-'));
    sent = [];
    manager = new ContainerManager({ node: 'r1', root: dir, logger: silentLogger(), ...hollowParts() });
    await manager.recover();
  });
  afterEach(async () => {
    reporter?.stop();
    manager?.close();
    reporter = manager = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const start = (deltaDelayMs?: number): ContainerReporter => {
    reporter = new ContainerReporter('r1', manager!, { publishContainerReport: (r) => sent.push(r) > 0 }, 60_000, deltaDelayMs);
    reporter.start();
    return reporter;
  };
  const deltas = (): ContainerReport[] => sent.filter((r) => !r.full);

  it('sends one delta with the latest state of each container when a batch starts', async () => {
    const r = start(60_000);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.full, true);
    const ids = Array.from({ length: 20 }, () => newId());
    await Promise.all(ids.map((id, i) => manager!.run(runRequest(id, 'registry.test/img:1', {}, { workload: 'w', replica: i }))));
    assert.equal(deltas().length, 0);
    r.flush();
    // 40 changes (PENDING, then RUNNING, per container) go out as one message with each container once.
    assert.equal(deltas().length, 1);
    const all = deltas()[0]?.containers ?? [];
    assert.equal(all.length, 20);
    assert.deepEqual(new Set(all.map((c) => c.id)), new Set(ids));
    assert.ok(all.every((c) => c.status?.state === ContainerState.CONTAINER_STATE_RUNNING));
  });

  it('sends gathered changes by itself after the delay', async () => {
    start(5);
    const id = newId();
    await manager!.run(runRequest(id, 'registry.test/img:1'));
    await eventually('a delta with the container running', () =>
      deltas().flatMap((d) => d.containers).find((c) => c.id === id && c.status?.state === ContainerState.CONTAINER_STATE_RUNNING));
  });

  it('reports removals in the same gathered delta and lists each id once', async () => {
    const r = start(60_000); // only the explicit flush sends (a short delay could fire between the calls on a loaded machine)
    const a = newId();
    const b = newId();
    await manager!.run(runRequest(a, 'registry.test/img:1'));
    await manager!.run(runRequest(b, 'registry.test/img:1'));
    await manager!.remove(a, { force: true });
    r.flush();
    const d = deltas();
    assert.equal(d.length, 1);
    assert.deepEqual(d[0]?.removed, [a]);
    assert.deepEqual(d[0]?.containers.map((c) => c.id), [b]);
  });

  it('drops gathered changes when a full report goes out, and sends what is left on stop', async () => {
    const r = start(60_000);
    const a = newId();
    await manager!.run(runRequest(a, 'registry.test/img:1'));
    r.full();
    assert.equal(sent.at(-1)?.full, true);
    assert.deepEqual(sent.at(-1)?.containers.map((c) => c.id), [a]);
    r.flush();
    assert.equal(deltas().length, 0);
    const b = newId();
    await manager!.run(runRequest(b, 'registry.test/img:1'));
    r.stop();
    assert.deepEqual(deltas().map((d) => d.containers.map((c) => c.id)), [[b]]);
  });

  it('splits a delta at MAX_DELTA_CONTAINERS changes', async () => {
    start(60_000);
    const n = MAX_DELTA_CONTAINERS + 5;
    await Promise.all(Array.from({ length: n }, () => manager!.run(runRequest(newId(), 'registry.test/img:1'))));
    // The first MAX_DELTA_CONTAINERS distinct changes went out at once; the rest wait for the timer.
    assert.ok(deltas().length >= 1);
    assert.ok(deltas().every((d) => d.containers.length + d.removed.length <= MAX_DELTA_CONTAINERS));
  });
});
