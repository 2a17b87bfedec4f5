/**
 * `berth agent`: one per node. Wiring only: parse settings, detect the node's
 * facts, start the agent API, register with the controller, heartbeat on NATS,
 * and stop cleanly on SIGTERM/SIGINT.
 *
 * Exit codes: 0 after a clean stop, 1 when it cannot run (e.g. the listen
 * address is taken, the controller rejects the node), 2 for usage errors.
 */
import { setMaxListeners } from 'node:events';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { Command, CommanderError } from 'commander';
import {
  BERTH_VERSION,
  FailedPreconditionError,
  CancelledError,
  InvalidArgumentError,
  UnavailableError,
  createLogger,
  messageOf,
  parseLogLevel,
  parsers,
  registryProblem,
  resolveConfig,
  type Logger,
  type Setting,
} from '../lib/index.js';
import { buildNodeSpec, detectNodeFacts, grpcRegistrar, registerWithRetry } from './node/index.js';
import { agentBatchHandlers, agentServiceHandlers, agentStreamHandlers, agentVolumeHandlers, startAgentServer, type AgentServer, type AgentServerOptions } from './api/index.js';
import { checkAllowBind, LocalVolumes } from './volumes/index.js';
import { ContainerReporter, PullProgressThrottle, StatusPublisher } from './status/index.js';
import { MetricsSampler } from './metrics/index.js';
import { ContainerManager } from './containers/index.js';
import { detectCgroups, Runtime, writeBundle } from './runtime/index.js';
import { ImagePuller, ImageRecordStore, ImageService, RegistryClient } from './images/index.js';
import { LocalContentStore } from './content/index.js';
import { OverlaySnapshotter } from './snapshots/index.js';
import { HelperNodeMaker, LinuxOverlayMounter, ZstdCliDecoder } from './sys/index.js';
import { LinuxSys } from './sys/linux.js';
import { bindInNetns, LinuxNetOps, ProcConntrackReader } from './sys/index.js';
import { DnsResolver, NodeDns, parseUpstreamList, PollingDirectory, serviceEntries, systemUpstreams } from './dns/index.js';
import { DisabledNetwork, grpcNodeSource, grpcServiceSource, NodeNetwork, RouteSync, ServiceSync, TrafficMeter } from './network/index.js';
import { DEFAULT_CLUSTER_CIDR, formatCidr, parseClusterCidr, parseIpv4 } from '../lib/network.js';
import { formatIpv4, parseCidr } from '../lib/network.js';
import { Activator, grpcServiceLookup } from './network/index.js';
import { netnsTcp } from './sys/index.js';
import { DEFAULT_VXLAN_DEVICE, DEFAULT_VXLAN_PORT, DEFAULT_VXLAN_VNI, parseRoutingMode, parseUdpPort, parseVni, VXLAN_MTU, VxlanSync, type RoutingMode } from './network/index.js';
import type { AgentServiceServer } from '../proto/gen/berth/v1/agent.js';
import type { PullProgress } from '../proto/gen/berth/v1/types.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function nodeName(raw: string, source: string): string {
  if (!DNS_LABEL.test(raw)) {
    throw new InvalidArgumentError(`${source}: expected a node name of 1-63 lowercase letters, digits and "-", starting and ending with a letter or digit, got "${raw}"`, { field: source });
  }
  return raw;
}

function defaultNodeName(): string {
  const h = os.hostname().toLowerCase().split('.')[0] ?? '';
  return DNS_LABEL.test(h) ? h : '';
}

function registryList(raw: string, source: string): string[] {
  const parts = raw.split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of parts) {
    const problem = registryProblem(p);
    if (problem !== undefined) throw new InvalidArgumentError(`${source}: expected HOST[:PORT] registries separated by commas; "${p}": ${problem}`, { field: source });
  }
  return parts;
}

function registryHost(raw: string, source: string): string {
  const [one, ...rest] = registryList(raw, source);
  if (one === undefined || rest.length > 0) throw new InvalidArgumentError(`${source}: expected one registry HOST[:PORT], got "${raw}"`, { field: source });
  return one;
}

/** The agent's settings: flag > environment > config file > default. */
export const agentSettings = {
  controller: { flag: 'controller', env: 'BERTH_CONTROLLER', parse: parsers.hostPort, default: '127.0.0.1:7070' } as Setting<string>,
  nats: { flag: 'nats', env: 'BERTH_NATS', parse: parsers.urlList, default: ['nats://127.0.0.1:4222'] } as Setting<string[]>,
  node: { flag: 'node', env: 'BERTH_NODE', parse: nodeName, default: defaultNodeName() } as Setting<string>,
  root: { flag: 'root', env: 'BERTH_ROOT', parse: parsers.string, default: '/var/lib/berth' } as Setting<string>,
  labels: { flag: 'labels', env: 'BERTH_LABELS', parse: parsers.labels, default: {} } as Setting<Record<string, string>>,
  listen: { flag: 'listen', env: 'BERTH_AGENT_LISTEN', parse: parsers.hostPort, default: '127.0.0.1:7071' } as Setting<string>,
  address: { flag: 'address', env: 'BERTH_AGENT_ADDRESS', parse: parsers.hostPort, default: '' } as Setting<string>,
  runtimeRoot: { flag: 'runtime-root', env: 'BERTH_RUNTIME_ROOT', key: 'runtime-root', parse: parsers.string, default: '/run/berth' } as Setting<string>,
  defaultRegistry: { flag: 'default-registry', env: 'BERTH_DEFAULT_REGISTRY', key: 'default-registry', parse: registryHost, default: '' } as Setting<string>,
  insecureRegistry: { flag: 'insecure-registry', env: 'BERTH_INSECURE_REGISTRY', key: 'insecure-registry', parse: registryList, default: [] } as Setting<string[]>,
  allowBind: { flag: 'allow-bind', env: 'BERTH_ALLOW_BIND', key: 'allow-bind', parse: (raw: string, source: string) => checkAllowBind(raw.split(/[:,]/).map((p) => p.trim()).filter(Boolean), source), default: [] } as Setting<string[]>,
  logLevel: { flag: 'log-level', env: 'BERTH_LOG_LEVEL', key: 'log-level', parse: (raw: string, source: string) => parseLogLevel(raw, source), default: 'info' } as Setting<string>,
  network: { flag: 'network', env: 'BERTH_NETWORK', parse: networkPlugin, default: 'none' } as Setting<'cni' | 'none'>,
  internalIp: { flag: 'internal-ip', env: 'BERTH_INTERNAL_IP', key: 'internal-ip', parse: internalIp, default: '' } as Setting<string>,
  nodeNetns: { flag: 'node-netns', env: 'BERTH_NODE_NETNS', key: 'node-netns', parse: parsers.string, default: '' } as Setting<string>,
  dnsUpstream: { flag: 'dns-upstream', env: 'BERTH_DNS_UPSTREAM', key: 'dns-upstream', parse: (raw: string, source: string) => (parseUpstreamList(raw, source), raw.trim()), default: '' } as Setting<string>,
  clusterCidr: { flag: 'cluster-cidr', env: 'BERTH_CLUSTER_CIDR', key: 'cluster-cidr', parse: (raw: string, source: string) => formatCidr(parseClusterCidr(raw, source)), default: DEFAULT_CLUSTER_CIDR } as Setting<string>,
  routing: { flag: 'routing', env: 'BERTH_ROUTING', key: 'routing', parse: (raw: string, source: string) => parseRoutingMode(raw, source), default: 'host-gw' } as Setting<RoutingMode>,
  vxlanId: { flag: 'vxlan-id', env: 'BERTH_VXLAN_ID', key: 'vxlan-id', parse: (raw: string, source: string) => parseVni(raw, source), default: DEFAULT_VXLAN_VNI } as Setting<number>,
  vxlanPort: { flag: 'vxlan-port', env: 'BERTH_VXLAN_PORT', key: 'vxlan-port', parse: (raw: string, source: string) => parseUdpPort(raw, source), default: DEFAULT_VXLAN_PORT } as Setting<number>,
};

function networkPlugin(raw: string, source: string): 'cni' | 'none' {
  if (raw !== 'cni' && raw !== 'none') throw new InvalidArgumentError(`${source}: expected "cni" or "none", got "${raw}"`, { field: source });
  return raw;
}

function internalIp(raw: string, source: string): string {
  if (parseIpv4(raw) === undefined) throw new InvalidArgumentError(`${source}: expected an IPv4 address of this node, got "${raw}"`, { field: source });
  return raw;
}

class UsageError extends Error {}

function buildCommand(): Command {
  const cmd = new Command('berth agent')
    .description('run the node agent: registers this node with the controller and heartbeats on NATS')
    .option('--controller <host:port>', 'controller address (env BERTH_CONTROLLER; default 127.0.0.1:7070)')
    .option('--nats <urls>', 'NATS server URLs, comma-separated (env BERTH_NATS; default nats://127.0.0.1:4222)')
    .option('--node <name>', 'node name, a DNS label (env BERTH_NODE; default the host name)')
    .option('--root <dir>', 'data directory for images, content, snapshots and containers, created 0700 (env BERTH_ROOT; default /var/lib/berth)')
    .option('--runtime-root <dir>', 'runtime state of running containers (env BERTH_RUNTIME_ROOT; default /run/berth)')
    .option('--default-registry <host[:port]>', 'registry for short image names; default: the one the controller names (env BERTH_DEFAULT_REGISTRY)')
    .option('--insecure-registry <hosts>', 'registries reached over plain HTTP, comma-separated HOST[:PORT] (loopback ones always are; env BERTH_INSECURE_REGISTRY)')
    .option('--labels <k=v,...>', 'node labels, comma-separated key=value pairs (env BERTH_LABELS)')
    .option('--listen <host:port>', 'agent API listen address; port 0 picks one (default 127.0.0.1:7071)')
    .option('--address <host:port>', 'agent API address the controller dials (default: the listen address)')
    .option('--allow-bind <dir>', 'a host directory containers may bind-mount from (-v /dir/x:/data); repeat for more (env BERTH_ALLOW_BIND, ":"-separated; default none)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--config <file>', 'YAML file with any of the settings above (flags and environment win)')
    .option('--log-level <level>', 'error, warn, info or debug (env BERTH_LOG_LEVEL; default info)')
    .option('--network <plugin>', 'container networks: "cni" (a bridge with the node\'s subnet, published ports, routes to other nodes) or "none" (env BERTH_NETWORK; default none)')
    .option('--internal-ip <ip>', 'address other nodes route this node\'s container subnet through (env BERTH_INTERNAL_IP; default the host of --address)')
    .option('--cluster-cidr <cidr>', 'the cluster\'s container range when the controller does not say (env BERTH_CLUSTER_CIDR; default 10.244.0.0/16)')
    .option('--routing <mode>', 'how other nodes\' container subnets are reached (--network cni): "host-gw" (routes through each node\'s address; the nodes share a link) or "vxlan" (a VXLAN device, UDP between node addresses; container MTU 1450) (env BERTH_ROUTING; default host-gw)')
    .option('--vxlan-id <vni>', 'VXLAN network identifier, the same on every node (--routing vxlan; env BERTH_VXLAN_ID; default 1)')
    .option('--vxlan-port <port>', 'UDP port of VXLAN traffic between nodes, the same on every node (--routing vxlan; env BERTH_VXLAN_PORT; default 4789)')
    .option('--node-netns <path>', 'network namespace the node\'s container networking (bridge, routes, nft table) lives in; default the agent\'s own (env BERTH_NODE_NETNS)')
    .option('--dns-upstream <ips>', 'resolvers the containers\' DNS server (on the bridge gateway, --network cni) forwards other names to: IPs separated by commas, or "none" (env BERTH_DNS_UPSTREAM; default the agent\'s /etc/resolv.conf)')
    .option('--cleanup', 'on shutdown, remove the node\'s container networks, bridge, routes and nft table')
    .addHelpText('after', `
Examples:
  berth agent --controller 127.0.0.1:7070 --nats nats://127.0.0.1:4222 --node node-1 --root /var/lib/berth
  BERTH_NODE=node-2 berth agent --labels zone=a,disk=ssd --listen 0.0.0.0:7071 --address 10.0.0.2:7071`)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
    });
  return cmd;
}

/** The address the controller should dial: --address, or the bound address with a routable host. */
function advertisedAddress(explicit: string, bound: string): string {
  if (explicit !== '') return explicit;
  const i = bound.lastIndexOf(':');
  const host = bound.slice(0, i);
  const port = bound.slice(i + 1);
  if (host === '0.0.0.0' || host === '::' || host === '[::]') return `${os.hostname()}:${port}`;
  return bound;
}

function ensureRoot(root: string, log: Logger): void {
  let existed = true;
  try {
    statSync(root);
  } catch {
    existed = false;
  }
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new FailedPreconditionError(`failed to create root directory "${root}": ${messageOf(err)}`, { cause: err });
  }
  const st = statSync(root);
  if (!st.isDirectory()) throw new FailedPreconditionError(`failed to use root directory "${root}": expected a directory`);
  if (existed && (st.mode & 0o077) !== 0) {
    log.warn('root directory is accessible to other users; expected mode 0700', { root, mode: (st.mode & 0o777).toString(8) });
  }
}

/** Resolves after the first SIGTERM or SIGINT. */
function stopSignal(): { promise: Promise<string>; dispose(): void } {
  let handler: (sig: NodeJS.Signals) => void = () => undefined;
  const promise = new Promise<string>((resolve) => {
    handler = (sig) => resolve(sig);
  });
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
  return {
    promise,
    dispose() {
      process.removeListener('SIGTERM', handler);
      process.removeListener('SIGINT', handler);
    },
  };
}

export async function runAgent(argv: string[]): Promise<number> {
  const cmd = buildCommand();
  let flags: Record<string, unknown>;
  try {
    cmd.parse(argv, { from: 'user' });
    flags = cmd.opts();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }

  let cfg: ReturnType<typeof resolveConfig<typeof agentSettings>>;
  let logger: Logger;
  try {
    cfg = resolveConfig(agentSettings, { flags, file: typeof flags['config'] === 'string' ? flags['config'] : undefined });
    checkAllowBind(cfg.allowBind);
    if (cfg.node === '') throw new UsageError('--node: the host name is not a valid node name; give one with --node or BERTH_NODE');
    logger = createLogger({ level: cfg.logLevel, defaultMeta: { program: 'agent', node: cfg.node } });
  } catch (err) {
    process.stderr.write(`error: ${messageOf(err)}\n`);
    return 2;
  }

  const signals = stopSignal();
  const abort = new AbortController();
  void signals.promise.then((sig) => {
    logger.info('stopping', { signal: sig });
    abort.abort();
  });

  let server: AgentServer | undefined;
  let publisher: StatusPublisher | undefined;
  let manager: ContainerManager | undefined;
  let reporter: ContainerReporter | undefined;
  let client: RegistryClient | undefined;
  let sys: LinuxSys | undefined;
  let network: NodeNetwork | undefined;
  const routesAbort = new AbortController();
  // One signal ends every network loop (routes, services, traffic, DNS, activator, their pauses): more than Node's default 10 listeners.
  setMaxListeners(64, routesAbort.signal);
  let routesDone: Promise<void> | undefined;
  let vxlan: VxlanSync | undefined;
  let services: { sync: ServiceSync; done: Promise<void> } | undefined;
  let dns: { node: NodeDns; done: Promise<void> } | undefined;
  let traffic: { meter: TrafficMeter; done: Promise<void> } | undefined;
  let trafficOps: LinuxNetOps | undefined;
  const registrar = grpcRegistrar(cfg.controller);
  try {
    ensureRoot(cfg.root, logger);
    const facts = detectNodeFacts();
    logger.info('node facts', { ...facts });
    // The API is served from the start; its handlers answer UNAVAILABLE until the agent is ready.
    const ready: { impl?: AgentServiceServer } = {};
    const streams: NonNullable<AgentServerOptions['streams']> = {};
    const batch: NonNullable<AgentServerOptions['batch']> = {};
    const proxy = Object.fromEntries(
      (['runContainer', 'stopContainer', 'removeContainer', 'listContainers', 'pullImage', 'listImages', 'removeImages', 'pruneImages', 'searchImages', 'logs',
        'startContainer', 'killContainer', 'waitContainer', 'renameContainer', 'inspectContainer', 'topContainer', 'updateContainer', 'containerStats', 'copyFromContainer', 'copyToContainer'] as const).map((m) => [
        m,
        (call: { emit: (event: string, e: Error) => void }, callback?: (e: { code: number; details: string }) => void) => {
          const impl = ready.impl;
          if (impl) {
            // The handler and its call types match by method name.
            (impl[m] as (c: unknown, cb: unknown) => void)(call, callback);
            return;
          }
          const e = { code: 14, details: 'the agent is starting; try again' };
          if (callback) callback(e);
          else call.emit('error', Object.assign(new Error(e.details), e));
        },
      ]),
    ) as unknown as AgentServiceServer;
    let mgr: ContainerManager | undefined;
    const volumes = new LocalVolumes({
      root: cfg.root, allowBind: cfg.allowBind, logger,
      inUse: (name) => {
        // Until the containers are recovered nobody can say a volume is free.
        if (!mgr) throw new UnavailableError('the agent is starting; try again');
        return mgr.list().filter((c) => c.spec?.mounts.some((m) => m.type === 'volume' && m.source === name)).map((c) => c.name || c.id);
      },
    });
    await volumes.open();
    server = await startAgentServer({ listen: cfg.listen, logger, implementation: proxy, streams, batch, volumes: agentVolumeHandlers({ node: cfg.node, volumes, logger }) });
    const spec = buildNodeSpec(
      { name: cfg.node, labels: cfg.labels, address: advertisedAddress(cfg.address, server.address), agentVersion: BERTH_VERSION },
      facts,
    );
    if (cfg.internalIp !== '') spec.internalIp = cfg.internalIp;
    const registered = await registerWithRetry(registrar, spec, { logger, signal: abort.signal });
    registrar.close();
    publisher = await StatusPublisher.connect({ servers: cfg.nats, node: cfg.node, logger, signal: abort.signal });
    const pub = publisher;

    // Images, snapshots, runtime, containers.
    const defaultRegistry = cfg.defaultRegistry !== '' ? cfg.defaultRegistry : registered.defaultRegistry !== '' ? registered.defaultRegistry : undefined;
    sys = new LinuxSys();
    const runtime = new Runtime({ sys, cgroups: await detectCgroups(sys), root: join(cfg.runtimeRoot, 'runtime'), logger });
    client = new RegistryClient({ insecure: cfg.insecureRegistry });
    const content = new LocalContentStore(cfg.root);
    const snapshotter = new OverlaySnapshotter({ root: cfg.root, mounter: new LinuxOverlayMounter(sys) });
    const records = new ImageRecordStore(cfg.root);
    const puller = new ImagePuller({
      client, content, snapshotter, records, logger, defaultRegistry,
      nodeMaker: new HelperNodeMaker({ helperPath: sys.helperPath }),
      ...(existsSync('/usr/bin/zstd') ? { zstd: new ZstdCliDecoder() } : {}),
    });
    const images = new ImageService({
      puller, records, content, snapshotter, client, defaultRegistry,
      inUse: async (image) => (mgr?.list() ?? []).filter((c) => c.spec?.image === image.reference).map((c) => c.id),
    });
    const pullProgressSink = (): ((p: PullProgress) => void) => {
      const t = new PullProgressThrottle((p) => pub.publishPullProgress(p));
      return (p) => t.push(p);
    };
    if (cfg.network === 'cni') {
      const clusterCidr = registered.clusterCidr ?? cfg.clusterCidr;
      const subnet = registered.node?.network?.subnet;
      const netOps = new LinuxNetOps(cfg.nodeNetns !== '' ? { nodeNetns: cfg.nodeNetns } : {});
      trafficOps = netOps;
      // Service names for the containers: a resolver on the bridge gateway, from ServiceService.List every second.
      const dnsSource = grpcServiceSource(cfg.controller);
      const directory = new PollingDirectory({ source: { list: async (o) => serviceEntries(await dnsSource.listServices(o)) }, logger });
      const resolver = new DnsResolver({ directory, upstreams: cfg.dnsUpstream !== '' ? parseUpstreamList(cfg.dnsUpstream, '--dns-upstream') : systemUpstreams(), logger, clients: clusterCidr });
      const nodeDns = new NodeDns({ resolver, bind: (address, port) => bindInNetns(address, port, cfg.nodeNetns !== '' ? cfg.nodeNetns : undefined), logger });
      dns = { node: nodeDns, done: directory.run(routesAbort.signal).finally(() => dnsSource.close()) };
      // mesh: a single container may not publish a host port a workload publishes on every node (known from the service table's newest List answer).
      const mesh = { publishedBy: (port: number, protocol: string) => services?.sync.publishedBy(port, protocol) };
      network = new NodeNetwork({ ops: netOps, logger, stateDir: join(cfg.root, 'network'), clusterCidr, resolver: nodeDns, ...(cfg.routing === 'vxlan' ? { mtu: VXLAN_MTU } : {}), mesh, ...(subnet ? { subnet } : {}) });
      await network.start();
      const nodes = grpcNodeSource(cfg.controller);
      // Other nodes' subnets from the node list every 2 s: host-gw routes, or VXLAN for nodes that share no link.
      if (cfg.routing === 'vxlan') {
        vxlan = new VxlanSync({ ops: netOps, logger, self: cfg.node, clusterCidr, vni: cfg.vxlanId, port: cfg.vxlanPort });
        routesDone = vxlan.start(nodes, 2000, routesAbort.signal).finally(() => nodes.close());
      } else {
        // A VXLAN device left by an earlier agent in vxlan mode goes (its routes with it).
        await netOps.deleteLink(DEFAULT_VXLAN_DEVICE).catch((err: unknown) => logger.warn('failed to delete a leftover vxlan device', { device: DEFAULT_VXLAN_DEVICE, reason: messageOf(err) }));
        routesDone = new RouteSync({ ops: netOps, logger, self: cfg.node, clusterCidr }).start(nodes, 2000, routesAbort.signal).finally(() => nodes.close());
      }
      // Service virtual IPs: this node's `ip berth_svc` table, from ServiceService.List every second.
      const svcSource = grpcServiceSource(cfg.controller);
      // Scale from zero: hold listeners on the bridge gateway for services at zero replicas; a held connection asks for a replica on NATS.
      const holdTcp = netnsTcp(cfg.nodeNetns !== '' ? cfg.nodeNetns : undefined);
      const holdLookup = grpcServiceLookup(cfg.controller);
      const activator = subnet
        ? new Activator({ tcp: holdTcp, address: formatIpv4(parseCidr(subnet, 'subnet').base + 1), sink: { activate: (s, held) => void pub.publishActivation(s, held) }, lookup: holdLookup, logger, signal: routesAbort.signal })
        : undefined;
      // The routing mesh never takes the node's own ports: the agent's API and the containers' DNS on the gateway.
      const reservedPorts = [`${server.address.slice(server.address.lastIndexOf(':') + 1)}/tcp`, '53/udp', '53/tcp'];
      const svcSync = new ServiceSync({ ops: netOps, logger, bridge: network.bridge, reservedPorts, localPorts: () => network?.hostPorts() ?? [], ...(activator ? { activator } : {}) });
      services = {
        sync: svcSync,
        done: svcSync.start(svcSource, 1000, routesAbort.signal).finally(() => {
          svcSource.close();
          activator?.close();
          holdLookup.close();
          holdTcp.close();
        }),
      };
      logger.info('container network ready', { subnet: subnet ?? '', clusterCidr, routing: cfg.routing });
    }
    manager = mgr = new ContainerManager({
      network: network ?? new DisabledNetwork(cfg.nodeNetns !== '' ? cfg.nodeNetns : undefined),
      node: cfg.node, root: cfg.root, runtime, images, snapshots: snapshotter, writeBundle, logger, pullProgressSink, defaultRegistry, mounts: volumes,
    });
    await manager.recover();
    ready.impl = agentServiceHandlers({ node: cfg.node, containers: manager, images, runtime, logger, pullProgressSink });
    streams.impl = agentStreamHandlers({ containers: manager, runtime, logger });
    batch.impl = agentBatchHandlers({ containers: manager, logger });
    reporter = new ContainerReporter(cfg.node, manager, publisher);
    reporter.start();
    // Per-endpoint traffic (`ip berth_traffic` counters + conntrack), published every 2 s and fed to the metrics sampler.
    if (trafficOps) {
      const meter = new TrafficMeter({ node: cfg.node, ops: trafficOps, conntrack: new ProcConntrackReader(cfg.nodeNetns !== '' ? { nodeNetns: cfg.nodeNetns } : {}), containers: manager, logger });
      traffic = { meter, done: meter.run(publisher, routesAbort.signal) };
    }
    // Per-replica load for the autoscaler, once a second, until shutdown.
    void new MetricsSampler({ node: cfg.node, source: manager, sink: publisher, logger, ...(traffic ? { traffic: traffic.meter } : {}) }).run(abort.signal);

    const intervalMs = registered.heartbeatIntervalMs > 0 ? registered.heartbeatIntervalMs : 1000;
    const m = manager;
    publisher.startHeartbeats({ intervalMs, capacity: spec.capacity, containers: () => m.count });
    logger.info('agent running', { node: cfg.node, address: spec.address, instance: publisher.instance, heartbeatIntervalMs: intervalMs, containers: manager.count });
    await signals.promise;
    return 0;
  } catch (err) {
    if (err instanceof CancelledError && abort.signal.aborted) return 0;
    logger.error('agent failed', { reason: messageOf(err) });
    process.stderr.write(`error: ${messageOf(err)}\n`);
    return 1;
  } finally {
    signals.dispose();
    registrar.close();
    // Containers keep running: the next agent process re-adopts them.
    reporter?.stop();
    manager?.close();
    await server?.close();
    await publisher?.close();
    client?.close();
    sys?.close();
    routesAbort.abort();
    await routesDone;
    await services?.done;
    await dns?.done;
    await traffic?.done;
    await dns?.node.close();
    if (network && flags['cleanup'] === true) {
      await services?.sync.clear().catch((err: unknown) => logger.error('failed to delete the service table', { reason: messageOf(err) }));
      await traffic?.meter.clear().catch((err: unknown) => logger.error('failed to delete the traffic table', { reason: messageOf(err) }));
      await vxlan?.clear().catch((err: unknown) => logger.error('failed to delete the vxlan device', { reason: messageOf(err) }));
      await network.cleanup().catch((err: unknown) => logger.error('failed to clean up the node network', { reason: messageOf(err) }));
    }
    // stderr is synchronous for files and pipes on Linux, so nothing is lost by returning now.
    logger.info('stopped');
  }
}
