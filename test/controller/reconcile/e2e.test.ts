/**
 * The reconciler with real programs: a `berth controller` process, two `berth
 * agent` processes (real containers from the busybox image in a local
 * registry), etcd and NATS. Replicas spread over both nodes; when one agent is
 * killed with -9 its replicas run on the other within 10 s; when it comes back
 * (re-adopting the containers that kept running meanwhile) it is told to
 * remove them, so the total is the desired count again.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { AgentServiceClient } from '../../../proto/gen/berth/v1/agent.js';
import { ContainerState, type Container } from '../../../proto/gen/berth/v1/types.js';
import {
  freePort, startEtcd, startNats, startProcess, startRegistryWithImages, tailLog, waitFor,
  type ManagedProcess, type RegistryWithImages, type Service,
} from '../../harness/index.js';
import { BERTH_JS, cleanEnv } from '../../cli/helpers.js';
import { Api } from '../../agent/containers/grpc.js';
import { cleanupAgentContainers } from '../../agent/containers/cleanup.js';
import { call, connectClients, manifest, type Clients } from '../helpers.js';

interface RealAgent {
  node: string;
  dir: string;
  proc?: ManagedProcess;
  /** Every process started for this node (a killed one still needs stop() for its temp dir). */
  procs: ManagedProcess[];
  client?: AgentServiceClient;
  api?: Api;
}

function logLines(p: ManagedProcess): Record<string, unknown>[] {
  if (!existsSync(p.logFile)) return [];
  return readFileSync(p.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return {};
    }
  });
}

describe('reconciler with real agents (e2e)', function () {
  this.timeout(240_000);
  let etcd: Service;
  let nats: Service;
  let reg: RegistryWithImages;
  let controller: ManagedProcess | undefined;
  let address = '';
  let c: Clients | undefined;
  const agents: RealAgent[] = [];

  before(async () => {
    [etcd, nats, reg] = await Promise.all([startEtcd(), startNats(), startRegistryWithImages(['busybox'])]);
  });
  after(async () => {
    await Promise.all([etcd?.stop(), nats?.stop(), reg?.stop()]);
  });
  afterEach(async () => {
    c?.close();
    for (const a of agents) {
      a.client?.close();
      for (const p of a.procs) await p.stop();
    }
    await controller?.stop();
    for (const a of agents.splice(0)) {
      try {
        await cleanupAgentContainers(join(a.dir, 'data'), join(a.dir, 'run'));
      } finally {
        rmSync(a.dir, { recursive: true, force: true });
      }
    }
  });

  async function startAgent(a: RealAgent): Promise<Api> {
    a.client?.close();
    const proc = startProcess({
      name: `agent-${a.node}`, command: process.execPath, env: cleanEnv(),
      args: () => [BERTH_JS, 'agent', '--controller', address, '--nats', nats.url, '--node', a.node,
        '--root', join(a.dir, 'data'), '--runtime-root', join(a.dir, 'run'), '--listen', '127.0.0.1:0'],
    });
    a.proc = proc;
    a.procs.push(proc);
    let agentAddress = '';
    await waitFor(`agent ${a.node} to run`, () => {
      if (proc.exited()) throw new Error(`agent exited:\n${tailLog(proc)}`);
      agentAddress = String(logLines(proc).find((l) => l['message'] === 'agent running')?.['address'] ?? '');
      return agentAddress !== '';
    }, 30_000);
    a.client = new AgentServiceClient(agentAddress, credentials.createInsecure());
    a.api = new Api(a.client);
    return a.api;
  }

  async function running(a: RealAgent): Promise<Container[]> {
    return ((await a.api?.list()) ?? []).filter((x) => x.workload === 'web' && x.status?.state === ContainerState.CONTAINER_STATE_RUNNING);
  }

  it('spreads replicas over two real agents, re-places them when one is killed and removes the duplicates when it returns', async () => {
    address = `127.0.0.1:${await freePort()}`;
    const ctl = startProcess({
      name: 'controller', command: process.execPath, env: cleanEnv(),
      args: () => [BERTH_JS, 'controller', '--etcd', etcd.url, '--nats', nats.url, '--listen', address, '--default-registry', reg.registry.host],
    });
    controller = ctl;
    await waitFor('the controller to listen', () => {
      if (ctl.exited()) throw new Error(`controller exited:\n${tailLog(ctl)}`);
      return tailLog(ctl, 200).includes(`listening on ${address}`);
    }, 20_000);
    for (const node of ['node-a', 'node-b']) agents.push({ node, procs: [], dir: mkdtempSync(join(tmpdir(), `berth-recon-e2e-${node}-`)) });
    const [a, b] = agents as [RealAgent, RealAgent];
    await Promise.all([startAgent(a), startAgent(b)]);
    c = connectClients(address);

    await call(c.workloads, c.workloads.apply, { manifest: manifest('web', { replicas: 4, image: 'busybox', extra: '  command: [sleep, "1000"]' }), source: 'web.yaml', dryRun: false });
    await waitFor('2 running replicas on each node', async () => (await running(a)).length === 2 && (await running(b)).length === 2, 90_000);
    const fromB = (await running(b)).map((x) => x.id);

    await b.proc?.kill9();
    const killedAt = Date.now();
    await waitFor('4 replicas running on node-a', async () => (await running(a)).length === 4, 10_000);
    const replacedInMs = Date.now() - killedAt;
    assert.ok(replacedInMs <= 10_000);

    // node-b comes back with the two replicas that kept running while its agent was gone.
    await startAgent(b);
    await waitFor('node-b to remove its moved-away replicas', async () => (await b.api?.list() ?? []).filter((x) => fromB.includes(x.id)).length === 0, 60_000);
    assert.equal((await running(a)).length + (await running(b)).length, 4);
    const list = await call(c.containers, c.containers.list, { all: false, selector: {}, node: '', workload: 'web' });
    assert.equal(list.containers.length, 4);

    await call(c.workloads, c.workloads.scale, { name: 'web', replicas: 0 });
    await waitFor('every replica removed', async () => (await a.api?.list() ?? []).length === 0 && (await b.api?.list() ?? []).length === 0, 60_000);
  });
});
