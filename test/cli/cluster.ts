/**
 * A real Berth control plane for end-to-end tests: etcd, NATS and one
 * controller process (the built `berth controller`), plus helpers to start
 * agents. Everything is stopped by PID in stop(). startNetCluster adds a
 * registry and namespace hosts (no default route, egress guard) with one
 * `--network cni` agent each, for the networking end-to-end tests.
 */
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import {
  freePort, makeHosts, makeTempDir, startEtcd, startNats, startProcess, startRegistryWithImages, tailLog, waitFor,
  type ManagedProcess, type RegistryWithImages, type Service, type TestHosts,
} from '../harness/index.js';
import { cleanupAgentContainers } from '../agent/containers/cleanup.js';
import { BERTH_JS, berth, cleanEnv, type CliResult } from './helpers.js';

export interface TestCluster {
  etcd: Service;
  nats: Service;
  controller: ManagedProcess | undefined;
  /** host:port of the controller's API. */
  address: string;
  agents: ManagedProcess[];
  /** Runs the CLI against this cluster. */
  cli(args: string[], options?: { stdin?: string }): Promise<CliResult>;
  startController(): Promise<ManagedProcess>;
  startAgent(node: string, extra?: string[]): ManagedProcess;
  /** startAgent, then waits (up to 60 s) until `berth get nodes` lists the node Ready; fails at once with its log when the agent exits. */
  startReadyAgent(node: string, extra?: string[]): Promise<ManagedProcess>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Start the controller (default true). */
  controller?: boolean;
  /** More controller flags (e.g. --cluster-cidr, --service-cidr). */
  controllerArgs?: string[];
}

export async function startCluster(options: ClusterOptions = {}): Promise<TestCluster> {
  const etcd = await startEtcd();
  let nats: Service;
  try {
    nats = await startNats();
  } catch (err) {
    await etcd.stop();
    throw err;
  }
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const roots: string[] = [];
  const cluster: TestCluster = {
    etcd,
    nats,
    controller: undefined,
    address,
    agents: [],
    cli: (args, o = {}) => berth(args, { env: cleanEnv({ BERTH_CONTROLLER: address }), stdin: o.stdin }),
    async startController() {
      const proc = startProcess({
        name: 'controller',
        command: process.execPath,
        args: () => [BERTH_JS, 'controller', '--etcd', etcd.url, '--nats', nats.url, '--listen', address, '--default-registry', '127.0.0.1:5000', ...(options.controllerArgs ?? [])],
        env: cleanEnv(),
      });
      cluster.controller = proc;
      await waitFor('the controller to listen', () => {
        if (proc.exited()) throw new Error(`controller exited early:\n${tailLog(proc)}`);
        return tailLog(proc, 200).includes(`listening on ${address}`);
      }, 20_000);
      return proc;
    },
    startAgent(node, extra = []) {
      const root = makeTempDir(`agent-${node}`);
      roots.push(root);
      const proc = startProcess({
        name: `agent-${node}`,
        command: process.execPath,
        args: () => [BERTH_JS, 'agent', '--controller', address, '--nats', nats.url, '--node', node, '--root', join(root, 'state'), '--runtime-root', join(root, 'run'), '--listen', '127.0.0.1:0', ...extra],
        env: cleanEnv(),
      });
      cluster.agents.push(proc);
      return proc;
    },
    async startReadyAgent(node, extra = []) {
      const agent = cluster.startAgent(node, extra);
      await waitFor(`${node} to be Ready`, async () => {
        if (agent.exited()) throw new Error(`agent exited early:\n${tailLog(agent)}`);
        const r = await cluster.cli(['get', 'nodes', '-o', 'json']);
        return r.code === 0 && r.stdout.includes(`"${node}"`) && r.stdout.includes('NODE_STATE_READY');
      }, 60_000, 500);
      return agent;
    },
    async stop() {
      await Promise.all(cluster.agents.map((a) => a.stop()));
      await cluster.controller?.stop();
      await nats.stop();
      await etcd.stop();
      // Containers outlive their agent by design: remove them (processes, cgroups, mounts) before the data roots.
      // A root whose cleanup failed is kept (it may still hold mounts) and the failure is thrown.
      const failures: unknown[] = [];
      for (const r of roots) {
        try {
          await cleanupAgentContainers(join(r, 'state'), join(r, 'run'));
          rmSync(r, { recursive: true, force: true });
        } catch (err) {
          failures.push(err);
        }
      }
      if (failures.length > 0) throw new AggregateError(failures, `failed to clean up ${failures.length} agent root(s)`);
    },
  };
  if (options.controller !== false) {
    try {
      await cluster.startController();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }
  return cluster;
}

export interface NetClusterOptions {
  /** How many namespace-host nodes (node-0 ...), each with one agent. */
  nodes: number;
  /** The controller's --cluster-cidr and --service-cidr (guarded on the hosts' bridge). */
  clusterCidr: string;
  serviceCidr: string;
  /** More flags for node i's agent (labels, routing). */
  agentArgs?: (i: number) => string[];
}

export interface NetCluster {
  reg: RegistryWithImages;
  hosts: TestHosts;
  cluster: TestCluster;
  agents: ManagedProcess[];
  /** The busybox reference in `reg`. */
  image: string;
}

/**
 * A registry with busybox, `nodes` namespace hosts and a cluster whose agents
 * run `--network cni` with their node networking inside the hosts; resolves
 * once every node is Ready. On failure everything started is stopped again
 * before the error is thrown; otherwise the caller stops cluster, hosts and
 * registry (in that order).
 */
export async function startNetCluster(opts: NetClusterOptions): Promise<NetCluster> {
  const reg = await startRegistryWithImages(['busybox']);
  let hosts: TestHosts | undefined;
  let cluster: TestCluster | undefined;
  try {
    hosts = await makeHosts(opts.nodes, { guardRanges: [opts.clusterCidr, opts.serviceCidr] });
    const c = await startCluster({ controllerArgs: ['--cluster-cidr', opts.clusterCidr, '--service-cidr', opts.serviceCidr] });
    cluster = c;
    const agents = hosts.hosts.map((h, i) => c.startAgent(`node-${i}`, [
      '--network', 'cni', '--node-netns', `/run/netns/${h.netns}`, '--internal-ip', h.address, '--cleanup', ...(opts.agentArgs?.(i) ?? []),
    ]));
    await waitFor(`${opts.nodes} Ready nodes`, async () => {
      for (const a of agents) if (a.exited()) throw new Error(`agent exited early:\n${tailLog(a)}`);
      const r = await c.cli(['get', 'nodes', '-o', 'json']);
      return r.code === 0 && (r.stdout.match(/NODE_STATE_READY/g) ?? []).length === opts.nodes;
    }, 60_000, 500);
    return { reg, hosts, cluster: c, agents, image: reg.images['busybox']?.reference ?? '' };
  } catch (err) {
    await cluster?.stop().catch(() => undefined);
    await hosts?.cleanup().catch(() => undefined);
    await reg.stop().catch(() => undefined);
    throw err;
  }
}
