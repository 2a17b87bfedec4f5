/**
 * What the reconciler suites start before each test: a controller (wired as
 * main.ts wires it) under a fresh etcd key prefix that has become leader, gRPC
 * clients to it, and fake agents registered with it. stop() closes the
 * clients, stops the agents and the controller and deletes the prefix.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { waitFor } from '../../harness/index.js';
import { connectClients, type Clients } from '../helpers.js';
import { startController, type TestController } from './controller.js';
import { FakeAgent } from './fake-agent.js';

export interface FakeCluster {
  /** The etcd key prefix of this test's store. */
  prefix: string;
  ctl: TestController;
  clients: Clients;
  agents: FakeAgent[];
  stop(): Promise<void>;
}

/** `raw` deletes the prefix at the end; `nodes` default to n1, n2 and n3. */
export async function startFakeCluster(etcd: { url: string }, nats: { url: string }, raw: Etcd3, nodes: readonly string[] = ['n1', 'n2', 'n3']): Promise<FakeCluster> {
  const prefix = `/test-${randomBytes(4).toString('hex')}/berth/v1/`;
  const ctl = await startController(etcd.url, nats.url, prefix, 'ctl-a');
  let clients: Clients | undefined;
  let agents: FakeAgent[] = [];
  const stop = async (): Promise<void> => {
    clients?.close();
    await Promise.all(agents.map((a) => a.stop()));
    await ctl.stop();
    await raw.delete().prefix(prefix);
  };
  try {
    await waitFor('leadership', () => ctl.election.isLeader(), 10_000);
    clients = connectClients(ctl.address);
    agents = nodes.map((node) => new FakeAgent({ node, natsUrl: nats.url, controller: ctl.address }));
    await Promise.all(agents.map((a) => a.start()));
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { prefix, ctl, clients, agents, stop };
}
