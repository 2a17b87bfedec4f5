/**
 * A controller for tests, wired in-process as main.ts wires it: real etcd
 * store and election, NATS membership, reports and events, the reconciler and
 * the gRPC API on a free port.
 */
import { createWriteStream } from 'node:fs';
import { createLogger, silentLogger } from '../../../lib/index.js';
import { AgentPool } from '../../../controller/agents/index.js';
import { startApiServer, type ApiServer } from '../../../controller/api/index.js';
import { Membership, NatsContainerReports, NatsEventPublisher, NatsHeartbeats, ObservedState } from '../../../controller/nodes/index.js';
import { EventRecorder, Reconciler } from '../../../controller/reconcile/index.js';
import { EtcdElection, EtcdStore } from '../../../controller/store/index.js';

export interface TestController {
  address: string;
  store: EtcdStore;
  election: EtcdElection;
  reconciler: Reconciler;
  stop(): Promise<void>;
}

export async function startController(etcdUrl: string, natsUrl: string, prefix: string, id: string): Promise<TestController> {
  const logger = process.env['RECON_DEBUG'] ? createLogger({ level: 'debug', stream: createWriteStream(process.env['RECON_DEBUG'], { flags: 'a' }), defaultMeta: { id } }) : silentLogger();
  const store = new EtcdStore({ endpoints: [etcdUrl], prefix, logger });
  const election = new EtcdElection(store, { controllerId: id, logger });
  const membership = new Membership({ store, election, heartbeats: new NatsHeartbeats({ servers: [natsUrl], logger }), logger });
  const observed = new ObservedState();
  const reports = new NatsContainerReports({ servers: [natsUrl], observed, logger });
  const agents = new AgentPool({ logger, runTimeoutMs: 5000, timeoutMs: 5000 });
  const publisher = new NatsEventPublisher({ servers: [natsUrl], logger });
  await publisher.start();
  const events = new EventRecorder({ store, publisher, logger });
  const reconciler = new Reconciler({ store, election, membership, observed, agents, events, logger, resyncIntervalMs: 5000 });
  reconciler.attach();
  election.start();
  await membership.start();
  await reports.start();
  const api: ApiServer = await startApiServer({ listen: '127.0.0.1:0', store, election, membership, containers: { store, observed, agents }, logger });
  return {
    address: api.address, store, election, reconciler,
    async stop() {
      await api.stop(1000);
      await election.stop();
      reconciler.detach();
      agents.close();
      await events.stop();
      await publisher.stop();
      await reports.stop();
      await membership.stop();
      await store.close();
    },
  };
}

