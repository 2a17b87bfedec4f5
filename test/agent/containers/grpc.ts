/** Promise wrappers around the generated AgentServiceClient for tests. */
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import type { AgentServiceClient, RunContainerRequest } from '../../../proto/gen/berth/v1/agent.js';
import { ContainerSpec, type Container, type LogLine, type PullProgress } from '../../../proto/gen/berth/v1/types.js';

export function unary<Req, Res>(fn: (req: Req, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn(req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

export function collect<T>(stream: ClientReadableStream<T>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const out: T[] = [];
    stream.on('data', (m: T) => out.push(m));
    stream.on('error', reject);
    stream.on('end', () => resolve(out));
  });
}

export function runRequest(id: string, image: string, spec: Partial<ContainerSpec> = {}, extra: Partial<RunContainerRequest> = {}): RunContainerRequest {
  return { id, name: `c-${id.slice(0, 8)}`, workload: '', revision: 0, replica: 0, ...extra, spec: { ...ContainerSpec.fromJSON({}), image, ...spec } };
}

export class Api {
  constructor(readonly client: AgentServiceClient) {}

  run(req: RunContainerRequest): Promise<Container> {
    return unary(this.client.runContainer.bind(this.client), req);
  }

  stop(id: string, graceSeconds: number): Promise<Container> {
    return unary(this.client.stopContainer.bind(this.client), { id, graceSeconds });
  }

  remove(id: string, force = false): Promise<unknown> {
    return unary(this.client.removeContainer.bind(this.client), { id, force });
  }

  async list(): Promise<Container[]> {
    const res = await unary<object, { containers: Container[] }>(this.client.listContainers.bind(this.client) as never, {});
    return res.containers;
  }

  async get(id: string): Promise<Container | undefined> {
    return (await this.list()).find((c) => c.id === id);
  }

  logs(id: string, opts: { follow?: boolean; tail?: number; sinceUnixMs?: number } = {}): Promise<LogLine[]> {
    return collect(this.client.logs({ id, follow: opts.follow ?? false, tail: opts.tail ?? 0, sinceUnixMs: opts.sinceUnixMs ?? 0 }));
  }

  async logText(id: string, opts: { follow?: boolean; tail?: number } = {}): Promise<string> {
    return (await this.logs(id, opts)).map((l) => Buffer.from(l.data).toString()).join('');
  }

  pull(reference: string): Promise<PullProgress[]> {
    return collect(this.client.pullImage({ reference }));
  }
}
