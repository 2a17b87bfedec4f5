/**
 * AgentPool.runContainers against a real agent gRPC server (AgentService and
 * AgentBatchService) whose container manager is the real one over the hollow
 * runtime: many containers per call, per-entry failures, a malformed batch
 * refused whole, and the per-container fallback for an agent without the
 * batch service.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCode, silentLogger } from '../../../lib/index.js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import { AgentPool } from '../../../controller/agents/index.js';
import { agentBatchHandlers, agentServiceHandlers, startAgentServer, type AgentServer } from '../../../agent/api/index.js';
import { ContainerManager } from '../../../agent/containers/index.js';
import { hollowImages, hollowParts } from '../../agent/containers/hollow.js';
import { runRequest } from '../../agent/containers/grpc.js';
import { newId } from '../../agent/containers/stack.js';

describe('AgentPool.runContainers', () => {
  let dir: string;
  let manager: ContainerManager | undefined;
  let server: AgentServer | undefined;
  let pool: AgentPool | undefined;

  async function startAgent(withBatch: boolean): Promise<{ manager: ContainerManager; address: string }> {
    const logger = silentLogger();
    const parts = hollowParts();
    const m = manager = new ContainerManager({ node: 'b1', root: join(dir, 'agent'), logger, ...parts });
    await m.recover();
    server = await startAgentServer({
      listen: '127.0.0.1:0', logger,
      implementation: agentServiceHandlers({ node: 'b1', containers: m, images: { pull: hollowImages.pull, list: async () => [] } as never, runtime: parts.runtime, logger }),
      ...(withBatch ? { batch: { impl: agentBatchHandlers({ containers: m, logger }) } } : {}),
    });
    return { manager: m, address: server.address };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-scale-batch-'));
    pool = new AgentPool();
  });
  afterEach(async () => {
    pool?.close();
    manager?.close();
    await server?.close(0);
    await rm(dir, { recursive: true, force: true });
    pool = manager = server = undefined;
  });

  it('runs many containers in one call and answers each in request order', async () => {
    const { manager: m, address } = await startAgent(true);
    const agent = pool!.agent('b1', address);
    const reqs = Array.from({ length: 50 }, (_, i) => runRequest(newId(), 'registry.test/img:1', {}, { workload: 'w', replica: i }));
    const out = await agent.runContainers!(reqs);
    assert.deepEqual(out.map((o) => o.id), reqs.map((r) => r.id));
    for (const o of out) {
      assert.equal(o.error, undefined);
      assert.equal(o.container?.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    }
    assert.equal(m.count, 50);
    // Idempotent by id: the same batch again starts nothing new.
    const again = await agent.runContainers!(reqs);
    assert.ok(again.every((o) => o.container?.status?.state === ContainerState.CONTAINER_STATE_RUNNING));
    assert.equal(m.count, 50);
  });

  it('fails only the bad entries of a batch when some cannot run', async () => {
    const { manager: m, address } = await startAgent(true);
    const agent = pool!.agent('b1', address);
    const good = runRequest(newId(), 'registry.test/img:1');
    const taken = runRequest(newId(), 'registry.test/img:1');
    await agent.runContainer(taken);
    const clash = { ...taken, spec: { ...taken.spec!, image: 'registry.test/other:2' } };
    const noImage = runRequest(newId(), '');
    const out = await agent.runContainers!([good, clash, noImage]);
    assert.equal(out[0]?.container?.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.ok(out[1]?.error && isCode(out[1].error, 'already_exists'), `expected already_exists, got ${out[1]?.error?.message}`);
    assert.match(out[1]?.error?.message ?? '', /different spec/);
    assert.ok(out[2]?.error && isCode(out[2].error, 'invalid_argument'), `expected invalid_argument, got ${out[2]?.error?.message}`);
    assert.match(out[2]?.error?.message ?? '', /image/);
    assert.equal(m.count, 2);
  });

  it('refuses a batch naming one id twice before running anything', async () => {
    const { manager: m, address } = await startAgent(true);
    const agent = pool!.agent('b1', address);
    const a = runRequest(newId(), 'registry.test/img:1');
    const b = runRequest(newId(), 'registry.test/img:1');
    await assert.rejects(agent.runContainers!([a, b, a]), (err: unknown) => {
      assert.ok(isCode(err, 'invalid_argument'));
      assert.match((err as Error).message, /containers\[2\]\.id: .* also appears at containers\[0\]; expected each id once/);
      return true;
    });
    assert.equal(m.count, 0);
  });

  it('falls back to one RunContainer per container when the agent has no batch service', async () => {
    const { manager: m, address } = await startAgent(false);
    const agent = pool!.agent('b1', address);
    const reqs = Array.from({ length: 5 }, () => runRequest(newId(), 'registry.test/img:1'));
    const out = await agent.runContainers!(reqs);
    assert.ok(out.every((o) => o.container?.status?.state === ContainerState.CONTAINER_STATE_RUNNING));
    assert.equal(m.count, 5);
    // Later calls go straight to the fallback and still work.
    const more = await agent.runContainers!([runRequest(newId(), 'registry.test/img:1')]);
    assert.equal(more[0]?.container?.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.equal(m.count, 6);
  });
});
