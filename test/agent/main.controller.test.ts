import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { waitFor, type ManagedProcess } from '../harness/index.js';
import { startCluster, type TestCluster } from '../cli/cluster.js';

interface NodeJson {
  spec: { name: string; labels?: Record<string, string>; address: string; capacity: { cpuMillis: number; memoryBytes: number; pids: number }; cgroupVersion: string; kernel: string; agentVersion: string };
  status: { state: string; reason?: string };
}

function exitCode(p: ManagedProcess): Promise<number | null> {
  if (p.exited()) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve) => p.child.once('exit', (code) => resolve(code)));
}

describe('agent/main with a controller (berth agent + berth get nodes)', () => {
  let cluster: TestCluster;

  beforeEach(async () => {
    cluster = await startCluster();
  });

  afterEach(async () => {
    await cluster?.stop();
  });

  async function nodes(): Promise<NodeJson[]> {
    const r = await cluster.cli(['get', 'nodes', '-o', 'json']);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as NodeJson[];
  }

  async function state(name: string): Promise<string | undefined> {
    return (await nodes()).find((n) => n.spec.name === name)?.status.state;
  }

  it('registers with its facts and labels and is Ready', async () => {
    cluster.startAgent('node-1', ['--labels', 'zone=a,disk=ssd']);
    await waitFor('node-1 to be Ready', async () => (await state('node-1')) === 'NODE_STATE_READY', 15_000, 200);
    const n = (await nodes()).find((x) => x.spec.name === 'node-1');
    assert.deepEqual(n?.spec.labels, { zone: 'a', disk: 'ssd' });
    assert.match(n?.spec.address ?? '', /^127\.0\.0\.1:\d+$/);
    assert.ok((n?.spec.capacity.cpuMillis ?? 0) >= 1000);
    assert.ok((n?.spec.capacity.memoryBytes ?? 0) > 0);
    assert.ok(['v1', 'v2', 'hybrid'].includes(n?.spec.cgroupVersion ?? ''));
    cluster.startAgent('node-2', ['--address', 'node-2.example:7071']);
    await waitFor('node-2 to be Ready', async () => (await state('node-2')) === 'NODE_STATE_READY', 15_000, 200);
    assert.equal((await nodes()).find((x) => x.spec.name === 'node-2')?.spec.address, 'node-2.example:7071');
    const table = await cluster.cli(['get', 'nodes']);
    assert.match(table.stdout, /^node-1\s+Ready\s+127\.0\.0\.1:\d+\s+0\/\d+\s+0\/[\d.]+[KMGT]i\s+0\/\d+\s+0\s+disk=ssd,zone=a\s+\d+s\s+\S+$/m);
  });

  it('is NotReady within 5 s after SIGTERM, and the agent exits 0', async () => {
    const agent = cluster.startAgent('node-1');
    await waitFor('node-1 to be Ready', async () => (await state('node-1')) === 'NODE_STATE_READY', 15_000, 200);
    agent.child.kill('SIGTERM');
    assert.equal(await exitCode(agent), 0);
    // Upper bound only: 5 s without heartbeats plus 3 s of margin for polling and process start.
    await waitFor('node-1 to be NotReady', async () => (await state('node-1')) === 'NODE_STATE_NOT_READY', 8_000, 200);
  });

  it('exits 0 on SIGTERM while NATS is down', async () => {
    const agent = cluster.startAgent('node-5');
    await waitFor('node-5 to be Ready', async () => (await state('node-5')) === 'NODE_STATE_READY', 15_000, 200);
    await cluster.nats.stop();
    await waitFor('the agent to notice', () => /heartbeats paused/.test(readLog(agent)), 10_000, 100);
    agent.child.kill('SIGTERM');
    assert.equal(await exitCode(agent), 0);
  });

  it('is NotReady within 5 s after kill -9', async () => {
    const agent = cluster.startAgent('node-1');
    await waitFor('node-1 to be Ready', async () => (await state('node-1')) === 'NODE_STATE_READY', 15_000, 200);
    await agent.kill9();
    await waitFor('node-1 to be NotReady', async () => (await state('node-1')) === 'NODE_STATE_NOT_READY', 8_000, 200);
  });

  it('exits 1 with the controller\'s reason when the controller rejects the node', async () => {
    const agent = cluster.startAgent('node-4', ['--labels', 'bad key!=x']);
    assert.equal(await exitCode(agent), 1);
    const log = readLog(agent);
    assert.match(log, /error: failed to register node "node-4": .*node\.labels/);
    assert.equal(await state('node-4'), undefined);
  });

  it('keeps retrying while the controller is down and registers once it is up', async () => {
    await cluster.controller?.stop();
    const agent = cluster.startAgent('node-2');
    await waitFor('a failed registration attempt', () => /registration failed; retrying/.test(agent.exited() ? '' : readLog(agent)), 15_000, 100);
    await cluster.startController();
    await waitFor('node-2 to be Ready', async () => (await state('node-2')) === 'NODE_STATE_READY', 20_000, 200);
  });
});

function readLog(p: ManagedProcess): string {
  try {
    return readFileSync(p.logFile, 'utf8');
  } catch {
    return '';
  }
}
