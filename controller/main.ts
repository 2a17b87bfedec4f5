/**
 * `berth controller`: wiring only. Builds the etcd store, the leader election,
 * node membership (NATS heartbeats), observed state (NATS container reports),
 * the agent client pool, the reconciler (acts only while leading) and the
 * gRPC API, prints
 * `listening on HOST:PORT` on stdout when ready, and on SIGTERM/SIGINT stops
 * accepting calls, resigns leadership, and closes NATS and etcd.
 */
import { hostname } from 'node:os';
import { Command, CommanderError } from 'commander';
import { BERTH_VERSION, createLogger, DEFAULT_CLUSTER_CIDR, messageOf, parseClusterCidr, parseLogLevel, parsers, resolveConfig, type Setting } from '../lib/index.js';
import { startApiServer, type ApiServer } from './api/index.js';
import { VolumeManager } from './volumes/index.js';
import { AgentVolumePool, AgentPool, AgentStreamPool } from './agents/index.js';
import { Membership, NatsActivations, NatsContainerReports, NatsEventPublisher, NatsHeartbeats, NatsNodeMetrics, NatsPullProgress, ObservedState, PullWatchers } from './nodes/index.js';
import { LeaderAutoscaler } from './autoscale/index.js';
import { EventRecorder, Reconciler } from './reconcile/index.js';
import { DEFAULT_SERVICE_CIDR, EtcdElection, EtcdStore, EtcdVipStore, checkRangesApart, parseServiceCidr } from './store/index.js';
import { NatsNodeTraffic, ServiceDirectory, TrafficTable } from './services/index.js';

const controllerIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export const controllerSettings = {
  etcd: { flag: 'etcd', env: 'BERTH_ETCD', parse: parsers.urlList, default: ['http://127.0.0.1:2379'] } satisfies Setting<string[]>,
  nats: { flag: 'nats', env: 'BERTH_NATS', parse: parsers.urlList, default: ['nats://127.0.0.1:4222'] } satisfies Setting<string[]>,
  listen: { flag: 'listen', env: 'BERTH_LISTEN', parse: parsers.hostPort, default: '127.0.0.1:7070' } satisfies Setting<string>,
  defaultRegistry: { flag: 'default-registry', env: 'BERTH_DEFAULT_REGISTRY', key: 'default-registry', parse: parsers.hostPort, default: '' } satisfies Setting<string>,
  id: {
    flag: 'id',
    env: 'BERTH_CONTROLLER_ID',
    parse: (raw: string, source: string): string => {
      if (!controllerIdPattern.test(raw)) {
        throw new Error(`${source}: expected 1 to 63 letters, digits, ".", "_" and "-", starting with a letter or digit, got "${raw}"`);
      }
      return raw;
    },
    default: `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63),
  } satisfies Setting<string>,
  logLevel: { flag: 'log-level', env: 'BERTH_LOG_LEVEL', key: 'log-level', parse: (raw: string, source: string) => parseLogLevel(raw, source), default: 'info' } satisfies Setting<string>,
  clusterCidr: {
    flag: 'cluster-cidr', env: 'BERTH_CLUSTER_CIDR', key: 'cluster-cidr', default: DEFAULT_CLUSTER_CIDR,
    parse: (raw: string, source: string): string => {
      parseClusterCidr(raw, source);
      return raw;
    },
  } satisfies Setting<string>,
  serviceCidr: {
    flag: 'service-cidr', env: 'BERTH_SERVICE_CIDR', key: 'service-cidr', default: DEFAULT_SERVICE_CIDR,
    parse: (raw: string, source: string): string => {
      parseServiceCidr(raw, source);
      return raw;
    },
  } satisfies Setting<string>,
};

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => () => {
      process.off('SIGTERM', term);
      process.off('SIGINT', int);
      resolve(sig);
    };
    const term = on('SIGTERM');
    const int = on('SIGINT');
    process.on('SIGTERM', term);
    process.on('SIGINT', int);
  });
}

export async function runController(argv: string[]): Promise<number> {
  const program = new Command('berth controller')
    .description('run a Berth controller: the API, desired state in etcd, leader election, node membership')
    .option('--etcd <urls>', 'etcd client URLs, comma-separated (env BERTH_ETCD; default http://127.0.0.1:2379)')
    .option('--nats <url>', 'NATS server URL (env BERTH_NATS; default nats://127.0.0.1:4222)')
    .option('--listen <host:port>', 'gRPC listen address; port 0 picks one (env BERTH_LISTEN; default 127.0.0.1:7070)')
    .option('--default-registry <host:port>', 'registry for images that name no host (env BERTH_DEFAULT_REGISTRY)')
    .option('--id <name>', 'controller id for leader election (env BERTH_CONTROLLER_ID; default hostname-pid)')
    .option('--config <file>', 'YAML file with any of the settings above')
    .option('--log-level <level>', 'error, warn, info or debug (env BERTH_LOG_LEVEL; default info)')
    .option('--cluster-cidr <cidr>', 'IPv4 range split into one /24 container subnet per node (env BERTH_CLUSTER_CIDR; default 10.244.0.0/16)')
    .option('--service-cidr <cidr>', 'IPv4 range service virtual IPs come from (env BERTH_SERVICE_CIDR; default 10.96.0.0/16)')
    .version(BERTH_VERSION)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    throw err;
  }
  const flags = program.opts<Record<string, unknown>>();
  const configFile = typeof flags['config'] === 'string' ? flags['config'] : undefined;
  let cfg;
  try {
    cfg = resolveConfig(controllerSettings, { flags, ...(configFile ? { file: configFile } : {}) });
    checkRangesApart(cfg.serviceCidr, cfg.clusterCidr);
  } catch (err) {
    process.stderr.write(`berth controller: ${messageOf(err)}\n`);
    return 2;
  }

  const logger = createLogger({ level: cfg.logLevel, defaultMeta: { program: 'controller', controllerId: cfg.id } });
  const store = new EtcdStore({ endpoints: cfg.etcd, logger, clusterCidr: cfg.clusterCidr });
  const election = new EtcdElection(store, { controllerId: cfg.id, logger });
  const heartbeats = new NatsHeartbeats({ servers: cfg.nats, logger, name: `berth-controller-${cfg.id}` });
  const membership = new Membership({ store, election, heartbeats, logger });
  const observed = new ObservedState();
  const reports = new NatsContainerReports({ servers: cfg.nats, observed, logger, name: `berth-controller-${cfg.id}-reports` });
  const agents = new AgentPool({ logger });
  const volumePool = new AgentVolumePool();
  const volumes = new VolumeManager({ store, observed, agents: volumePool, membership, logger });
  const agentStreams = new AgentStreamPool({ logger });
  const publisher = new NatsEventPublisher({ servers: cfg.nats, logger, name: `berth-controller-${cfg.id}-events` });
  const events = new EventRecorder({ store, publisher, logger });
  const reconciler = new Reconciler({ volumes: store, store, election, membership, observed, agents, events, logger });
  const autoscaler = new LeaderAutoscaler({ election, store, events, logger });
  // Scale from zero: a node holding a connection asks for a replica (the leader acts).
  const activations = new NatsActivations({ servers: cfg.nats, logger, name: `berth-controller-${cfg.id}-activations`, deliver: (a) => void autoscaler.activate(a.service) });
  const metrics = new NatsNodeMetrics({ servers: cfg.nats, logger, name: `berth-controller-${cfg.id}-metrics`, deliver: (m, at) => autoscaler.ingest(m, at) });
  // Image pull progress for the berth run that waits on it.
  const pulls = new PullWatchers();
  const pullProgress = new NatsPullProgress({ servers: cfg.nats, logger, name: `berth-controller-${cfg.id}-pulls`, deliver: (p) => pulls.deliver(p) });
  const trafficTable = new TrafficTable();
  const traffic = new NatsNodeTraffic({ servers: cfg.nats, logger, name: `berth-controller-${cfg.id}-traffic`, deliver: (m, at) => trafficTable.ingest(m, at) });
  const serviceDirectory = new ServiceDirectory({ vips: new EtcdVipStore(store, cfg.serviceCidr), workloads: store, observed, nodeState: (n) => membership.liveStatus(n).state, traffic: trafficTable, logger });
  const servicesAbort = new AbortController();
  let api: ApiServer | undefined;
  const signalled = waitForSignal();

  const shutdown = async (): Promise<void> => {
    await api?.stop().catch((err: unknown) => logger.warn('failed to stop the api cleanly', { error: messageOf(err) }));
    servicesAbort.abort();
    await election.stop().catch((err: unknown) => logger.warn('failed to resign leadership', { error: messageOf(err) }));
    reconciler.detach();
    autoscaler.detach();
    await activations.stop().catch((err: unknown) => logger.warn('failed to close NATS', { error: messageOf(err) }));
    await metrics.stop().catch((err: unknown) => logger.warn('failed to close NATS', { error: messageOf(err) }));
    await traffic.stop().catch((err: unknown) => logger.warn('failed to close NATS', { error: messageOf(err) }));
    await pullProgress.stop().catch((err: unknown) => logger.warn('failed to close NATS', { error: messageOf(err) }));
    agents.close();
    volumePool.close();
    agentStreams.close();
    await events.stop();
    await publisher.stop();
    await reports.stop().catch((err: unknown) => logger.warn('failed to close NATS', { error: messageOf(err) }));
    await membership.stop().catch((err: unknown) => logger.warn('failed to close NATS', { error: messageOf(err) }));
    await store.close().catch((err: unknown) => logger.warn('failed to close etcd', { error: messageOf(err) }));
  };

  try {
    await store.ping().catch((err: unknown) => logger.warn('etcd not reachable yet; retrying in the background', { error: messageOf(err) }));
    reconciler.attach();
    autoscaler.attach();
    election.start();
    // NATS may come up later; the API serves meanwhile and nodes show NotReady.
    membership.start().catch((err: unknown) => logger.error('failed to subscribe to heartbeats', { error: messageOf(err) }));
    void serviceDirectory.run(servicesAbort.signal);
    reports.start().catch((err: unknown) => logger.error('failed to subscribe to container reports', { error: messageOf(err) }));
    metrics.start().catch((err: unknown) => logger.error('failed to subscribe to node metrics', { error: messageOf(err) }));
    traffic.start().catch((err: unknown) => logger.error('failed to subscribe to node traffic', { error: messageOf(err) }));
    pullProgress.start().catch((err: unknown) => logger.error('failed to subscribe to pull progress', { error: messageOf(err) }));
    activations.start().catch((err: unknown) => logger.error('failed to subscribe to activations', { error: messageOf(err) }));
    publisher.start().catch((err: unknown) => logger.error('failed to connect the event publisher', { error: messageOf(err) }));
    api = await startApiServer({
      listen: cfg.listen,
      store,
      election,
      membership,
      containers: { store, observed, volumes, agents, streams: agentStreams, pulls },
      logger,
      ...(cfg.defaultRegistry ? { defaultRegistry: cfg.defaultRegistry } : {}),
      clusterCidr: cfg.clusterCidr,
      services: { directory: serviceDirectory, serviceCidr: cfg.serviceCidr },
    });
  } catch (err) {
    logger.error('controller failed to start', { error: messageOf(err) });
    process.stderr.write(`berth controller: ${messageOf(err)}\n`);
    await shutdown();
    return 1;
  }
  process.stdout.write(`listening on ${api.address}\n`);
  logger.info('controller ready', { listen: api.address, id: cfg.id, etcd: cfg.etcd, nats: cfg.nats });

  const sig = await signalled;
  logger.info('controller stopping', { signal: sig });
  await shutdown();
  logger.info('controller stopped');
  return 0;
}
