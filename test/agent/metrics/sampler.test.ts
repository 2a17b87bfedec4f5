import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../../lib/logging.js';
import { MetricsSampler, type ReplicaSource } from '../../../agent/metrics/index.js';
import type { ContainerStats } from '../../../proto/gen/berth/v1/containers.js';
import type { NodeMetrics } from '../../../proto/gen/berth/v1/metrics.js';
import { Container, ContainerSpec, ContainerState, ContainerStatus } from '../../../proto/gen/berth/v1/types.js';
import { startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import { AgentStack } from '../containers/stack.js';
import { Api, runRequest } from '../containers/grpc.js';

const newId = (): string => randomBytes(32).toString('hex');

function container(id: string, workload: string, cpuMillis: number, health = ''): Container {
  return {
    ...Container.fromJSON({}),
    id,
    name: `c-${id.slice(0, 6)}`,
    workload,
    spec: { ...ContainerSpec.fromJSON({}), image: 'x', resources: { cpuMillis, memoryBytes: 0, pids: 0 } },
    status: { ...ContainerStatus.fromJSON({}), state: ContainerState.CONTAINER_STATE_RUNNING, health },
  };
}

/** A source whose counters the test moves by hand. */
class Counters implements ReplicaSource {
  readonly usage = new Map<string, number>();
  now = 1_000_000;
  constructor(readonly containers: Container[]) {}
  list(): Container[] {
    return this.containers;
  }
  async stats(ids: readonly string[]): Promise<ContainerStats[]> {
    return ids.map((id) => ({
      id, name: '', node: 'n1', cpuUsageNs: this.usage.get(id) ?? 0, readUnixMs: this.now, cpuPercent: 0,
      memoryUsageBytes: 4096, memoryLimitBytes: 0, pids: 1, pidsLimit: 0, state: 'running',
    }));
  }
}

const sink = { published: [] as NodeMetrics[], publishMetrics(m: NodeMetrics): boolean { this.published.push(m); return true; } };

describe('MetricsSampler', () => {
  it('reports CPU as percent of the requested cpu over the interval, per workload replica', async () => {
    const a = newId();
    const b = newId();
    const oneOff = newId();
    const src = new Counters([container(a, 'web', 500), container(b, 'web', 0, 'starting'), container(oneOff, '', 0)]);
    const s = new MetricsSampler({ node: 'n1', source: src, sink, logger: silentLogger() });
    const first = await s.sample();
    assert.deepEqual(first.replicas.map((r) => [r.containerId, r.cpuPercent]), [[a, 0], [b, 0]], 'no CPU figure before a second sample; one-offs left out');
    src.now += 1000;
    src.usage.set(a, 500e6); // 0.5 core-seconds in 1 s with a 500m request: 100 %
    src.usage.set(b, 250e6); // 0.25 core-seconds without a request: 25 % of one core
    const second = await s.sample();
    const byId = new Map(second.replicas.map((r) => [r.containerId, r]));
    assert.equal(Math.round(byId.get(a)?.cpuPercent ?? -1), 100);
    assert.equal(Math.round(byId.get(b)?.cpuPercent ?? -1), 25);
    assert.equal(byId.get(a)?.ready, true);
    assert.equal(byId.get(b)?.ready, false, 'a replica still starting its health checks is not ready');
    assert.equal(second.node, 'n1');
    assert.equal(second.version, 1);
  });

  describe('with real containers', function () {
    this.timeout(120_000);
    let reg: RegistryWithImages | undefined;
    let stack: AgentStack | undefined;
    before(async () => {
      reg = await startRegistryWithImages(['busybox']);
      stack = await new AgentStack({ node: `m${newId().slice(0, 6)}` }).start();
    });
    after(async () => {
      await stack?.destroy();
      await reg?.stop();
    });

    it('measures a busy replica from its cgroup', async () => {
      const image = reg?.images['busybox']?.reference ?? '';
      const api = new Api(stack!.api);
      const id = newId();
      await api.run(runRequest(id, image, { command: ['sh', '-c', 'while :; do :; done'], resources: { cpuMillis: 1000, memoryBytes: 0, pids: 0 } }, { workload: 'busy', replica: 1, revision: 1 }));
      const s = new MetricsSampler({ node: stack!.node, source: stack!.manager, sink, logger: silentLogger() });
      await s.sample();
      await new Promise((r) => setTimeout(r, 1000));
      const m = await s.sample();
      const r = m.replicas.find((x) => x.containerId === id);
      assert.ok(r, 'the replica is sampled');
      assert.equal(r.workload, 'busy');
      assert.ok(r.cpuPercent > 1, `a spinning shell uses CPU (got ${r.cpuPercent}%)`);
      assert.ok(r.memoryBytes > 0);
    });
  });
});
