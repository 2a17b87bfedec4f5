/** Test helpers for the controller: promise wrappers over the generated gRPC clients, and manifests. */
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { startEtcd, startNats, type Service } from '../harness/index.js';
import {
  ContainerServiceClient, EventServiceClient, NodeServiceClient, SystemServiceClient, WorkloadServiceClient,
} from '../../proto/gen/berth/v1/controller.js';

type Unary<Req, Res> = (
  req: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => grpc.ClientUnaryCall;

/** Calls a generated unary method as a promise, with a 10 s deadline. */
export function call<Req, Res>(client: grpc.Client, method: Unary<Req, Res>, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, req, new grpc.Metadata(), { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

export interface Clients {
  workloads: WorkloadServiceClient;
  nodes: NodeServiceClient;
  system: SystemServiceClient;
  containers: ContainerServiceClient;
  events: EventServiceClient;
  close(): void;
}

export function connectClients(address: string): Clients {
  const creds = grpc.credentials.createInsecure();
  const c: Clients = {
    workloads: new WorkloadServiceClient(address, creds),
    nodes: new NodeServiceClient(address, creds),
    system: new SystemServiceClient(address, creds),
    containers: new ContainerServiceClient(address, creds),
    events: new EventServiceClient(address, creds),
    close() {
      c.workloads.close();
      c.nodes.close();
      c.system.close();
      c.containers.close();
      c.events.close();
    },
  };
  return c;
}

/** A one-document workload file. */
export function manifest(name: string, opts: { replicas?: number; image?: string; labels?: Record<string, string>; extra?: string } = {}): string {
  const labels = Object.entries(opts.labels ?? { app: name }).map(([k, v]) => `    ${k}: ${v}`).join('\n');
  return [
    'apiVersion: berth/v1',
    'kind: Workload',
    'metadata:',
    `  name: ${name}`,
    '  labels:',
    labels,
    'spec:',
    `  replicas: ${opts.replicas ?? 1}`,
    `  image: ${opts.image ?? 'busybox:latest'}`,
    ...(opts.extra ? [opts.extra] : []),
    '',
  ].join('\n');
}

/** Asserts a gRPC error's status code and message. */
export function grpcError(code: grpc.status, pattern: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    const e = err as grpc.ServiceError;
    if (e.code !== code) throw new Error(`expected status ${grpc.status[code]}, got ${grpc.status[e.code] ?? String(e.code)}: ${e.details ?? String(err)}`);
    if (!pattern.test(e.details)) throw new Error(`expected details matching ${String(pattern)}, got "${e.details}"`);
    return true;
  };
}

/**
 * Real etcd and NATS for a mocha suite (started in `before`, stopped in
 * `after`), with an etcd client for raw reads; read them inside hooks and tests.
 */
export function useEtcdAndNats(): { readonly etcd: Service; readonly nats: Service; readonly raw: Etcd3 } {
  let etcd: Service | undefined;
  let nats: Service | undefined;
  let raw: Etcd3 | undefined;
  before(async () => {
    [etcd, nats] = await Promise.all([startEtcd(), startNats()]);
    raw = new Etcd3({ hosts: etcd.url });
  });
  after(async () => {
    raw?.close();
    await Promise.all([etcd?.stop(), nats?.stop()]);
  });
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`no ${what}: read it inside a hook or a test`);
    return v;
  };
  return {
    get etcd() { return need(etcd, 'etcd'); },
    get nats() { return need(nats, 'NATS'); },
    get raw() { return need(raw, 'etcd client'); },
  };
}
