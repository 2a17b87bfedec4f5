/**
 * A multi-node Berth cluster on one machine for end-to-end tests: three (or
 * n) network-namespace hosts from the hosts harness, each running a real
 * `berth agent` process in its own namespace with its own address, against
 * real `berth controller` processes, etcd, NATS and a registry with the
 * busybox test image.
 *
 * Vocabulary:
 * - site: what before() makes once per suite and after() removes: n + 1
 *   namespace hosts on one bridge behind the hosts harness's egress guard
 *   (n nodes and one "control" host) and a registry in the control host,
 *   holding busybox as `busybox:v1` and `busybox:v2` (the same content under
 *   two tags, so that changing the tag is a new revision that pulls and runs
 *   like any other image).
 * - cluster: what each test makes and stops: etcd, NATS and the controllers
 *   in the control host (etcd on its loopback, NATS and the controllers' APIs
 *   on its address), and one agent per node host listening on that host's
 *   address.
 *
 * Why a control host rather than the bridge address: the guard drops test
 * addresses leaving through any interface but the bridge, and a connection
 * from the root namespace to the bridge's own address goes through `lo`, so
 * services bound to the bridge address are unreachable from the root
 * namespace (the tests and the CLI run there). From the root namespace the
 * control host is reached through the bridge like any other host.
 *
 * Addresses: everything is on loopback or inside the hosts' test subnet
 * (10.213.k.0/24); the namespaces have no default route.
 *
 * Processes in a host run under `nsenter --net=/run/netns/NAME` (network
 * namespace only; `ip netns exec` would also give them a private mount
 * namespace that the cleanup, running in the root one, could not see into).
 * nsenter execs the program, so the managed PID is the program's own and
 * kill -9 hits it.
 *
 * Lifecycle of cleanup (works after a failed test): stop() stops the agents
 * (SIGTERM; containers outlive them by design), the controllers, NATS and
 * etcd, then removes every agent's containers (processes, cgroups, mounts)
 * and data roots; site.stop() stops the registry and removes the hosts.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { AgentServiceClient } from '../../proto/gen/berth/v1/agent.js';
import { ContainerState, NodeState, type Container, type Node } from '../../proto/gen/berth/v1/types.js';
import {
  makeHosts, makeTempDir, pushTestImage, run, startProcess, tailLog, waitFor,
  type ManagedProcess, type TestHost, type TestHosts,
} from '../harness/index.js';
import { Api } from '../agent/containers/grpc.js';
import { cleanupAgentContainers } from '../agent/containers/cleanup.js';
import { BERTH_JS, berth, cleanEnv, type CliResult } from '../cli/helpers.js';
import { call, connectClients, type Clients } from '../controller/helpers.js';

/**
 * Fixed ports: every namespace has its own port space, so the usual ports are
 * free (agents on 7071 in each node host; the rest in the control host).
 */
export const PORTS = { agent: 7071, controller: 7070, etcd: 2379, etcdPeer: 2380, nats: 4222, natsMonitor: 8222, registry: 5000 } as const;

export interface Site {
  hosts: TestHosts;
  /** The node hosts (one agent each). */
  nodes: TestHost[];
  /** The host running etcd, NATS, the registry and the controllers. */
  control: TestHost;
  /** The registry's host:port (in the control host). */
  registryHost: string;
  registry: ManagedProcess;
  /** Full references of the busybox test image under two tags. */
  images: { v1: string; v2: string };
  stop(): Promise<void>;
}

/** Starts a program in a host's network namespace (see the module comment). */
export function startInHost(host: TestHost, opts: { name: string; command: string; args: (dir: string) => string[]; env?: NodeJS.ProcessEnv }): ManagedProcess {
  return startProcess({
    name: opts.name,
    command: 'nsenter',
    env: opts.env,
    args: (dir) => [`--net=/run/netns/${host.netns}`, '--', opts.command, ...opts.args(dir)],
  });
}

async function httpReady(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.status === 200 || res.status === 401;
}

async function startedOrStopped(proc: ManagedProcess, what: string, ready: () => Promise<boolean>): Promise<void> {
  try {
    await waitFor(`${what} to accept requests`, async () => {
      if (proc.exited()) throw new Error(`${what} exited early:\n${tailLog(proc)}`);
      return ready();
    }, 20_000, 100);
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** Makes `nodeCount` node hosts and a control host with a registry holding busybox:v1 and busybox:v2. */
export async function makeSite(nodeCount = 3): Promise<Site> {
  const hosts = await makeHosts(nodeCount + 1);
  const control = hosts.hosts[nodeCount] as TestHost;
  let registry: ManagedProcess | undefined;
  try {
    const registryHost = `${control.address}:${PORTS.registry}`;
    const reg = startInHost(control, {
      name: 'registry-control',
      command: 'docker-registry',
      args: (dir) => {
        const file = join(dir, 'config.yml');
        writeFileSync(file, [
          'version: 0.1',
          'log:', '  level: warn', '  accesslog:', '    disabled: true',
          'storage:', '  filesystem:', `    rootdirectory: ${join(dir, 'data')}`,
          'http:', `  addr: ${registryHost}`,
          '',
        ].join('\n'));
        return ['serve', file];
      },
    });
    registry = reg;
    await startedOrStopped(reg, 'docker-registry', () => httpReady(`http://${registryHost}/v2/`));
    const v1 = await pushTestImage(registryHost, 'busybox', { tag: 'v1' });
    const v2 = await pushTestImage(registryHost, 'busybox', { tag: 'v2' });
    return {
      hosts, nodes: hosts.hosts.slice(0, nodeCount), control, registryHost, registry: reg, images: { v1: v1.reference, v2: v2.reference },
      async stop() {
        await reg.stop();
        await hosts.cleanup();
      },
    };
  } catch (err) {
    await registry?.stop();
    await hosts.cleanup();
    throw err;
  }
}

export interface NodeAgent {
  /** Node name: the host's name (host-0, host-1, ...). */
  name: string;
  host: TestHost;
  /** Data root (state/ and run/ below it); kept across restarts of the agent. */
  dir: string;
  /** The running agent process, if any. */
  proc?: ManagedProcess;
  /** Every process started for this node (a killed one still needs stop() for its temp dir). */
  procs: ManagedProcess[];
  client?: AgentServiceClient;
  api?: Api;
}

export interface Controller {
  id: string;
  proc: ManagedProcess;
  /** host:port in the control host. */
  address: string;
  clients: Clients;
}

export interface MultiNodeCluster {
  site: Site;
  etcd: ManagedProcess;
  etcdUrl: string;
  nats: ManagedProcess;
  natsUrl: string;
  controllers: Controller[];
  agents: NodeAgent[];
  startController(id: string): Promise<Controller>;
  /** Starts (or restarts, keeping its data root) a node's agent in its namespace; resolves when its API answers. */
  startAgent(agent: NodeAgent, controller: Controller): Promise<void>;
  /** The berth CLI against a controller (the first one by default). */
  cli(args: string[], options?: { stdin?: string; controller?: Controller; timeoutMs?: number }): Promise<CliResult>;
  stop(): Promise<void>;
}

/** Starts etcd, NATS and `controllers` controller processes in the control host (ctl-0 first, leading) and one agent per node host, all Ready. */
export async function startMultiNodeCluster(site: Site, options: { controllers?: number } = {}): Promise<MultiNodeCluster> {
  const at = site.control.address;
  const etcdUrl = `http://${at}:${PORTS.etcd}`;
  const etcdPeer = `http://127.0.0.1:${PORTS.etcdPeer}`;
  const etcd = startInHost(site.control, {
    name: 'etcd-control',
    command: 'etcd',
    args: (dir) => ['--name', 'test', '--data-dir', join(dir, 'data'), '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
      '--listen-peer-urls', etcdPeer, '--initial-advertise-peer-urls', etcdPeer, '--initial-cluster', `test=${etcdPeer}`, '--log-level', 'warn', '--logger', 'zap'],
  });
  const natsPort = PORTS.nats;
  const natsMonitor = PORTS.natsMonitor;
  const nats = startInHost(site.control, {
    name: 'nats-control',
    command: 'nats-server',
    args: () => ['-a', at, '-p', String(natsPort), '-m', String(natsMonitor)],
  });
  const natsUrl = `nats://${at}:${natsPort}`;
  const roots: string[] = [];
  const cluster: MultiNodeCluster = {
    site,
    etcd,
    etcdUrl,
    nats,
    natsUrl,
    controllers: [],
    agents: site.nodes.map((host) => {
      const dir = makeTempDir(`mn-${host.name}`);
      roots.push(dir);
      return { name: host.name, host, dir, procs: [] };
    }),

    async startController(id) {
      // ctl-0 on 7070, ctl-1 on 7071, ...
      const address = `${at}:${PORTS.controller + cluster.controllers.length}`;
      const proc = startInHost(site.control, {
        name: `controller-${id}`,
        command: process.execPath,
        env: cleanEnv(),
        args: () => [BERTH_JS, 'controller', '--etcd', etcdUrl, '--nats', natsUrl, '--listen', address, '--id', id, '--default-registry', site.registryHost],
      });
      const clients = connectClients(address);
      const c: Controller = { id, proc, address, clients };
      cluster.controllers.push(c);
      await waitFor(`controller ${id} to listen`, () => {
        if (proc.exited()) throw new Error(`controller ${id} exited early:\n${tailLog(proc)}`);
        return tailLog(proc, 200).includes(`listening on ${address}`);
      }, 20_000, 100);
      return c;
    },

    async startAgent(a, controller) {
      a.client?.close();
      const address = `${a.host.address}:${PORTS.agent}`;
      const proc = startInHost(a.host, {
        name: `agent-${a.name}`,
        command: process.execPath,
        env: cleanEnv(),
        args: () => [BERTH_JS, 'agent',
          '--controller', controller.address, '--nats', natsUrl, '--node', a.name,
          '--root', join(a.dir, 'state'), '--runtime-root', join(a.dir, 'run'),
          '--listen', address, '--insecure-registry', site.registryHost, '--labels', `host=${a.name}`],
      });
      a.proc = proc;
      a.procs.push(proc);
      a.client = new AgentServiceClient(address, credentials.createInsecure());
      a.api = new Api(a.client);
      const api = a.api;
      await waitFor(`agent ${a.name} to answer on ${address}`, async () => {
        if (proc.exited()) throw new Error(`agent ${a.name} exited early:\n${tailLog(proc)}`);
        await api.list();
        return true;
      }, 30_000, 200);
    },

    cli(args, o = {}) {
      const ctl = o.controller ?? cluster.controllers[0];
      return berth(args, { env: cleanEnv({ BERTH_CONTROLLER: ctl?.address ?? '' }), stdin: o.stdin, timeoutMs: o.timeoutMs ?? 60_000 });
    },

    async stop() {
      const failures: unknown[] = [];
      for (const a of cluster.agents) {
        a.client?.close();
        for (const p of a.procs) await p.stop();
      }
      for (const c of cluster.controllers) {
        c.clients.close();
        await c.proc.stop();
      }
      await nats.stop();
      await etcd.stop();
      // Containers outlive their agent: remove them (processes, cgroups, mounts) before the data roots.
      for (const r of roots) {
        try {
          await cleanupAgentContainers(join(r, 'state'), join(r, 'run'));
          rmSync(r, { recursive: true, force: true });
        } catch (err) {
          failures.push(err);
        }
      }
      if (failures.length > 0) throw new AggregateError(failures, `failed to clean up ${failures.length} agent root(s): ${failures.map(String).join('; ')}`);
    },
  };

  try {
    await startedOrStopped(etcd, 'etcd', () => httpReady(`${etcdUrl}/health`));
    await startedOrStopped(nats, 'nats-server', () => httpReady(`http://${at}:${natsMonitor}/healthz`));
    const count = options.controllers ?? 1;
    const first = await cluster.startController('ctl-0');
    await waitFor('ctl-0 to lead', async () => (await call(first.clients.system, first.clients.system.version, {})).leader, 20_000, 100);
    for (let i = 1; i < count; i++) await cluster.startController(`ctl-${i}`);
    await Promise.all(cluster.agents.map((a) => cluster.startAgent(a, first)));
    await waitForNodes(cluster, (nodes) => cluster.agents.every((a) => nodeState(nodes, a.name) === NodeState.NODE_STATE_READY), 'every node Ready');
    return cluster;
  } catch (err) {
    await cluster.stop().catch(() => undefined);
    throw err;
  }
}

export function nodeState(nodes: readonly Node[], name: string): NodeState | undefined {
  return nodes.find((n) => n.spec?.name === name)?.status?.state;
}

/** Polls a controller's node list until `check` holds. */
export async function waitForNodes(cluster: MultiNodeCluster, check: (nodes: Node[]) => boolean, what: string, timeoutMs = 30_000, controller?: Controller): Promise<void> {
  const c = controller ?? cluster.controllers[0];
  if (!c) throw new Error('no controller');
  await waitFor(what, async () => check((await call(c.clients.nodes, c.clients.nodes.list, {})).nodes), timeoutMs, 100);
}

/** What one agent runs of a workload, asked of the agent itself (the ground truth, not the controller's view). */
export async function agentContainers(a: NodeAgent, workload: string): Promise<Container[]> {
  if (!a.api) return [];
  return (await a.api.list()).filter((c) => c.workload === workload);
}

export function isRunning(c: Container): boolean {
  return c.status?.state === ContainerState.CONTAINER_STATE_RUNNING;
}

/** Running and healthy (or without a health check): a replica that serves. */
export function isServing(c: Container): boolean {
  const h = c.status?.health ?? '';
  return isRunning(c) && (h === '' || h === 'healthy');
}

/** Running replicas of `workload` per agent, in agent order (agents that do not answer count as an error). */
export async function runningPerNode(agents: readonly NodeAgent[], workload: string): Promise<Container[][]> {
  return Promise.all(agents.map(async (a) => (await agentContainers(a, workload)).filter(isRunning)));
}

/** Runs a command on the root side of the machine (e.g. `ip link set VETH down`). */
export async function ip(args: string[]): Promise<void> {
  await run('ip', args);
}
