/**
 * ContainerService calls of the container verbs (start, restart, kill, wait,
 * rename, inspect, top, update, stats, cp), with the same error handling as
 * client.ts. Loaded only when one of these verbs runs.
 */
import type { ServiceError } from './rpc.js';
import type {
  ContainerStatsRequest, ContainerStatsResponse, InspectContainersResponse, KillContainersResponse, RestartContainersResponse,
  StartContainersResponse, UpdateContainersRequest, UpdateContainersResponse,
} from '../proto/gen/berth/v1/controller.js';
import type { ContainerProcesses, CopyToContainerResponse, WaitResult } from '../proto/gen/berth/v1/containers.js';
import type { Container } from '../proto/gen/berth/v1/types.js';
import { cliError } from './client.js';
import type { CliContext } from './context.js';

export interface ContainerVerbApi {
  start(containers: string[]): Promise<StartContainersResponse>;
  restart(containers: string[], graceSeconds: number): Promise<RestartContainersResponse>;
  kill(containers: string[], signal: string): Promise<KillContainersResponse>;
  /** No deadline: returns when the container exits. */
  wait(container: string, signal?: AbortSignal): Promise<WaitResult>;
  rename(container: string, newName: string): Promise<Container>;
  inspect(containers: string[]): Promise<InspectContainersResponse>;
  top(container: string): Promise<ContainerProcesses>;
  update(req: UpdateContainersRequest): Promise<UpdateContainersResponse>;
  /** Calls onSample for each sample; resolves when the stream ends (or `signal` aborts). */
  stats(req: ContainerStatsRequest, onSample: (r: ContainerStatsResponse) => void, signal?: AbortSignal): Promise<void>;
  /** Streams the tar of a container path to onChunk (awaited). */
  copyFrom(container: string, path: string, onChunk: (data: Buffer) => Promise<void>): Promise<void>;
  copyTo(container: string, path: string, chunks: AsyncIterable<Buffer>): Promise<CopyToContainerResponse>;
  close(): void;
}

export async function withContainerVerbs<T>(ctx: CliContext, fn: (api: ContainerVerbApi) => Promise<T>): Promise<T> {
  const grpc = await import('./rpc.js');
  const gen = await import('../proto/gen/berth/v1/controller.js');
  const client = grpc.makeClient(gen.ContainerServiceService, ctx.controller, grpc.credentials.createInsecure(), {
    'grpc.enable_retries': 0, 'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
  type Callback<Res> = (err: ServiceError | null, res: Res) => void;
  const call = <Res>(what: string, invoke: (md: InstanceType<typeof grpc.Metadata>, opts: { deadline?: number }, cb: Callback<Res>) => unknown, deadline: number | undefined = Date.now() + ctx.timeoutMs): Promise<Res> => {
    const t0 = Date.now();
    return new Promise<Res>((resolve, reject) => {
      invoke(new grpc.Metadata(), deadline === undefined ? {} : { deadline }, (err, res) => {
        ctx.trace(`${what} to ${ctx.controller}: ${err ? `error code ${err.code}` : 'ok'} in ${Date.now() - t0} ms`);
        if (err) reject(cliError(err, ctx));
        else resolve(res);
      });
    });
  };
  const api: ContainerVerbApi = {
    start: (containers) => call('ContainerService.Start', (md, o, cb) => client.start({ containers }, md, o, cb), Date.now() + ctx.timeoutMs + 5 * 60_000),
    restart: (containers, graceSeconds) => call('ContainerService.Restart', (md, o, cb) => client.restart({ containers, graceSeconds }, md, o, cb),
      Date.now() + ctx.timeoutMs + containers.length * ((graceSeconds || 10) + 30) * 1000),
    kill: (containers, signal) => call('ContainerService.Kill', (md, o, cb) => client.kill({ containers, signal }, md, o, cb)),
    wait: (container, signal) => new Promise<WaitResult>((resolve, reject) => {
      const c = client.wait({ container }, new grpc.Metadata(), {}, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(cliError(err, ctx));
        else resolve(res);
      });
      const onAbort = (): void => c.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
    rename: (container, newName) => call('ContainerService.Rename', (md, o, cb) => client.rename({ container, newName }, md, o, cb)),
    inspect: (containers) => call('ContainerService.Inspect', (md, o, cb) => client.inspect({ containers }, md, o, cb)),
    top: (container) => call('ContainerService.Top', (md, o, cb) => client.top({ container }, md, o, cb)),
    update: (req) => call('ContainerService.Update', (md, o, cb) => client.update(req, md, o, cb)),
    stats: (req, onSample, signal) => new Promise<void>((resolve, reject) => {
      const stream = client.stats(req, new grpc.Metadata(), req.stream ? {} : { deadline: Date.now() + ctx.timeoutMs });
      const onAbort = (): void => stream.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (r: ContainerStatsResponse) => onSample(r));
      stream.on('error', (err: ServiceError) => {
        signal?.removeEventListener('abort', onAbort);
        if (err.code === 1 && signal?.aborted) resolve();
        else reject(cliError(err, ctx));
      });
      stream.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
    }),
    copyFrom: async (container, path, onChunk) => {
      const stream = client.copyFrom({ container, path }, new grpc.Metadata(), {});
      try {
        for await (const chunk of stream as AsyncIterable<{ data: Uint8Array }>) await onChunk(Buffer.from(chunk.data));
      } catch (err) {
        stream.cancel();
        throw (err as Partial<ServiceError>).code !== undefined ? cliError(err, ctx) : err;
      }
    },
    copyTo: (container, path, chunks) => new Promise((resolve, reject) => {
      const stream = client.copyTo(new grpc.Metadata(), {}, (err, res) => {
        if (err) reject(cliError(err, ctx));
        else resolve(res);
      });
      void (async () => {
        try {
          const write = async (msg: Parameters<typeof stream.write>[0]): Promise<void> => {
            if (!stream.write(msg)) await new Promise<void>((r) => stream.once('drain', () => r()));
          };
          await write({ part: { $case: 'header', value: { container, path } } });
          for await (const data of chunks) await write({ part: { $case: 'data', value: data } });
          stream.end();
        } catch (err) {
          stream.cancel();
          reject(err);
        }
      })();
    }),
    close: () => client.close(),
  };
  try {
    return await fn(api);
  } finally {
    api.close();
  }
}
