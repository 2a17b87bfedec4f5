/**
 * A controller API server for a mocha suite, on real etcd and NATS: etcd and
 * NATS once for the suite (useEtcdAndNats); for each test a fresh key prefix, store, solo
 * election, node membership, API server on a free port and gRPC clients,
 * all stopped (and the prefix deleted) after the test.
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { silentLogger } from '../../../lib/index.js';
import { startApiServer, type ApiServer } from '../../../controller/api/index.js';
import { Membership, NatsHeartbeats } from '../../../controller/nodes/index.js';
import { EtcdStore, SoloElection } from '../../../controller/store/index.js';
import { connectClients, useEtcdAndNats, type Clients } from '../helpers.js';

export interface ApiFixture {
  /** The current test's clients, store, prefix, server; etcd for raw reads. */
  readonly c: Clients;
  readonly store: EtcdStore;
  readonly prefix: string;
  readonly api: ApiServer;
  readonly raw: Etcd3;
}

export function useApiServer(controllerId: string): ApiFixture {
  const svc = useEtcdAndNats();
  let prefix = '';
  let store: EtcdStore | undefined;
  let election: SoloElection | undefined;
  let membership: Membership | undefined;
  let api: ApiServer | undefined;
  let c: Clients | undefined;

  beforeEach(async () => {
    prefix = `/test-${randomBytes(4).toString('hex')}/berth/v1/`;
    store = new EtcdStore({ endpoints: [svc.etcd.url], prefix });
    election = new SoloElection(controllerId);
    election.start();
    membership = new Membership({ store, election, heartbeats: new NatsHeartbeats({ servers: [svc.nats.url] }) });
    await membership.start();
    api = await startApiServer({ listen: '127.0.0.1:0', store, election, membership, defaultRegistry: '127.0.0.1:5000', clusterCidr: '10.244.0.0/16', logger: silentLogger() });
    c = connectClients(api.address);
  });
  afterEach(async () => {
    c?.close();
    await api?.stop(1000);
    await membership?.stop();
    await election?.stop();
    await store?.close();
    if (prefix !== '') await svc.raw.delete().prefix(prefix);
  });

  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`no ${what}: use the fixture inside a test`);
    return v;
  };
  return {
    get c() { return need(c, 'clients'); },
    get store() { return need(store, 'store'); },
    get prefix() { return prefix; },
    get api() { return need(api, 'API server'); },
    get raw() { return svc.raw; },
  };
}
