/**
 * The agent as a process (`berth agent`) against a real controller (`berth
 * controller`), etcd, NATS and a registry: containers run through the agent
 * API survive `kill -9` of the agent, are re-adopted by the next agent
 * process, and an exit that happened while no agent ran is reported on NATS
 * after the restart.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { connect, type NatsConnection, type Subscription } from 'nats';
import {
  freePort, startEtcd, startNats, startProcess, startRegistryWithImages, tailLog, waitFor,
  type ManagedProcess, type RegistryWithImages,
} from '../harness/index.js';
import { BERTH_JS, berth, cleanEnv } from '../cli/helpers.js';
import { AgentServiceClient } from '../../proto/gen/berth/v1/agent.js';
import { ContainerReport, Heartbeat } from '../../proto/gen/berth/v1/status.js';
import { ContainerState, type Container } from '../../proto/gen/berth/v1/types.js';
import { Api, runRequest } from './containers/grpc.js';
import { eventually, newId } from './containers/stack.js';
import { cleanupAgentContainers } from './containers/cleanup.js';

type Service = Awaited<ReturnType<typeof startNats>>;

function logLines(p: ManagedProcess): Record<string, unknown>[] {
  if (!existsSync(p.logFile)) return [];
  return readFileSync(p.logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('berth agent (process) with a controller', function () {
  this.timeout(180_000);
  let etcd: Service;
  let nats: Service;
  let reg: RegistryWithImages;
  let controller: ManagedProcess | undefined;
  let agent: ManagedProcess | undefined;
  let dir = '';
  let nc: NatsConnection;
  let subs: Subscription[] = [];
  let client: AgentServiceClient | undefined;
  const node = `e2e-${newId().slice(0, 8)}`;

  before(async () => {
    [etcd, nats, reg] = await Promise.all([startEtcd(), startNats(), startRegistryWithImages(['busybox'])]);
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await Promise.all([etcd?.stop(), nats?.stop(), reg?.stop()]);
  });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-agentw-e2e-'));
    const address = `127.0.0.1:${await freePort()}`;
    controller = startProcess({
      name: 'controller', command: process.execPath, env: cleanEnv(),
      args: () => [BERTH_JS, 'controller', '--etcd', etcd.url, '--nats', nats.url, '--listen', address, '--default-registry', reg.registry.host],
    });
    await waitFor('the controller to listen', () => {
      if (controller!.exited()) throw new Error(`controller exited:\n${tailLog(controller!)}`);
      return tailLog(controller!, 200).includes(`listening on ${address}`);
    }, 20_000);
    process.env['AGENTW_CONTROLLER'] = address;
  });

  afterEach(async () => {
    for (const s of subs) s.unsubscribe();
    subs = [];
    client?.close();
    await agent?.stop();
    await controller?.stop();
    // Whatever the agent left (a test that failed half-way): containers, cgroups, mounts.
    try {
      await cleanupAgentContainers(join(dir, 'data'), join(dir, 'run'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  async function startAgent(): Promise<Api> {
    client?.close();
    agent = startProcess({
      name: 'agent', command: process.execPath, env: cleanEnv(),
      args: () => [BERTH_JS, 'agent', '--controller', String(process.env['AGENTW_CONTROLLER']), '--nats', nats.url, '--node', node,
        '--root', join(dir, 'data'), '--runtime-root', join(dir, 'run'), '--listen', '127.0.0.1:0'],
    });
    const p = agent;
    const running = await eventually('the agent to run', () => {
      if (p.exited()) throw new Error(`agent exited:\n${tailLog(p)}`);
      return logLines(p).find((l) => l['message'] === 'agent running');
    }, 30_000);
    client = new AgentServiceClient(String(running['address']), credentials.createInsecure());
    return new Api(client);
  }

  function reports(): ContainerReport[] {
    const out: ContainerReport[] = [];
    const sub = nc.subscribe(`berth.v1.node.${node}.containers`);
    subs.push(sub);
    void (async () => {
      for await (const m of sub) out.push(ContainerReport.decode(m.data));
    })();
    return out;
  }

  function heartbeats(): Heartbeat[] {
    const out: Heartbeat[] = [];
    const sub = nc.subscribe(`berth.v1.node.${node}.heartbeat`);
    subs.push(sub);
    void (async () => {
      for await (const m of sub) out.push(Heartbeat.decode(m.data));
    })();
    return out;
  }

  it('re-adopts a running container after kill -9 of the agent and reports an exit that happened meanwhile', async () => {
    const seen = reports();
    const beats = heartbeats();
    let api = await startAgent();
    const survivor = newId();
    const victim = newId();
    // A short name: the registry comes from the controller's Register response (--default-registry).
    const s = await api.run(runRequest(survivor, 'busybox', { command: ['sleep', '1000'] }));
    const v = await api.run(runRequest(victim, 'busybox', { command: ['sleep', '1000'] }));
    assert.equal(s.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    await eventually('a heartbeat counting 2 containers', () => beats.find((b) => b.containers === 2));
    await eventually('both running in the reports', () => {
      const ids = new Set(seen.flatMap((r) => r.containers).filter((c) => c.status?.state === ContainerState.CONTAINER_STATE_RUNNING).map((c) => c.id));
      return ids.has(survivor) && ids.has(victim) ? true : undefined;
    });

    await agent!.kill9();
    process.kill(s.status!.pid, 0);
    process.kill(v.status!.pid, 'SIGKILL');
    await eventually('the victim to be gone', () => {
      try {
        process.kill(v.status!.pid, 0);
        return undefined;
      } catch {
        return true;
      }
    });
    const before = seen.length;
    await agent!.stop();
    api = await startAgent();

    const after: Container[] = [];
    const exited = await eventually('the exit in a report after the restart', () => {
      after.splice(0, after.length, ...seen.slice(before).flatMap((r) => r.containers));
      return after.find((c) => c.id === victim && c.status?.state === ContainerState.CONTAINER_STATE_EXITED);
    });
    assert.equal(exited.status?.exitCode, 137);
    const listed = await api.list();
    const again = listed.find((c) => c.id === survivor);
    assert.equal(again?.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.equal(again?.status?.pid, s.status!.pid);
    assert.equal(again?.spec?.image, 'busybox');

    await api.remove(survivor, true);
    await api.remove(victim);
    assert.deepEqual(await api.list(), []);
    assert.equal(readFileSync('/proc/self/mounts', 'utf8').includes(survivor), false);
  });

  it('runs the replicas of a workload applied with berth apply and stops them when the workload is scaled to 0', async () => {
    const seen = reports();
    const api = await startAgent();
    const file = join(dir, 'web.yaml');
    writeFileSync(file, `apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web }\nspec:\n  replicas: 2\n  image: busybox\n  command: [sleep, "1000"]\n`);
    const env = cleanEnv({ BERTH_CONTROLLER: String(process.env['AGENTW_CONTROLLER']) });
    const applied = await berth(['apply', '-f', file], { env });
    assert.equal(applied.code, 0, applied.stderr);
    const running = await eventually('two running replicas on the agent', async () => {
      const list = (await api.list()).filter((c) => c.workload === 'web' && c.status?.state === ContainerState.CONTAINER_STATE_RUNNING);
      return list.length === 2 ? list : undefined;
    }, 60_000);
    assert.deepEqual(running.map((c) => c.replica).sort(), [0, 1]);
    assert.ok(seen.some((r) => r.containers.some((c) => c.workload === 'web')));
    const scaled = await berth(['scale', 'web', '--replicas', '0'], { env });
    assert.equal(scaled.code, 0, scaled.stderr);
    await eventually('the replicas to be removed', async () => ((await api.list()).length === 0 ? true : undefined), 60_000);
  });
});
