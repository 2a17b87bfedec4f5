/**
 * The controller API as the verbs use it: promise-returning calls with a
 * deadline, and errors turned into BerthErrors with one-line messages.
 * The gRPC client (cli/rpc.ts) and the generated code are imported here, on the first call,
 * so that `berth --help` and usage errors never load them.
 */
import type { ServiceError } from './rpc.js';
import type {
  ApplyRequest,
  ApplyResponse,
  AutoscaleRequest,
  ContainerLogsRequest,
  ListContainersRequest,
  ListContainersResponse,
  ListEventsRequest,
  ListEventsResponse,
  RemoveContainersRequest,
  RemoveContainersResponse,
  StopContainersRequest,
  StopContainersResponse,
  RunRequest,
  DeleteWorkloadsRequest,
  DeleteWorkloadsResponse,
  HistoryResponse,
  RolloutStatusResponse,
  UndoRequest,
  UndoResponse,
  ListNodesResponse,
  ListWorkloadsResponse,
  ScaleRequest,
  VersionResponse,
} from '../proto/gen/berth/v1/controller.js';
import type { Container, LogLine, Node, Workload } from '../proto/gen/berth/v1/types.js';
import type { RemoveNodeResponse } from '../proto/gen/berth/v1/controller.js';
import { BerthError, ErrorCode, UnavailableError, fromGrpcError } from '../lib/errors.js';
import { connectFailureReason, isConnectFailure } from '../lib/unreachable.js';
import type { CliContext } from './context.js';

/** The controller calls the CLI makes. */
export interface ControllerApi {
  apply(req: ApplyRequest): Promise<ApplyResponse>;
  getWorkload(name: string): Promise<Workload>;
  listWorkloads(selector: Record<string, string>): Promise<ListWorkloadsResponse>;
  deleteWorkloads(req: DeleteWorkloadsRequest): Promise<DeleteWorkloadsResponse>;
  scale(req: ScaleRequest): Promise<Workload>;
  history(name: string): Promise<HistoryResponse>;
  rolloutStatus(name: string): Promise<RolloutStatusResponse>;
  undo(req: UndoRequest): Promise<UndoResponse>;
  restart(name: string): Promise<Workload>;
  autoscale(req: AutoscaleRequest): Promise<Workload>;
  listNodes(): Promise<ListNodesResponse>;
  version(): Promise<VersionResponse>;
  runContainer(req: RunRequest): Promise<Container>;
  listContainers(req: Partial<ListContainersRequest>): Promise<ListContainersResponse>;
  removeContainers(req: RemoveContainersRequest): Promise<RemoveContainersResponse>;
  stopContainers(req: StopContainersRequest): Promise<StopContainersResponse>;
  /**
   * Streams a container's log lines to `onLine`; resolves when the stream ends
   * (at once without follow; when the container exits or `signal` aborts with
   * follow). Follow streams have no deadline.
   */
  logs(req: ContainerLogsRequest, onLine: (line: LogLine) => void, signal?: AbortSignal): Promise<void>;
  cordonNode(name: string, cordoned: boolean): Promise<Node>;
  drainNode(name: string): Promise<Node>;
  removeNode(name: string, force: boolean): Promise<RemoveNodeResponse>;
  listEvents(req: Partial<ListEventsRequest>): Promise<ListEventsResponse>;
  close(): void;
}

/** Turns a gRPC error (cli/rpc.ts ServiceError) into a BerthError whose message is fit for "error: ..." */
export function cliError(err: unknown, ctx: Pick<CliContext, 'controller' | 'timeoutMs'>): BerthError {
  const e = err as Partial<ServiceError>;
  const details = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : String(err);
  if (e.code === 14 && isConnectFailure(details)) {
    return new UnavailableError(`failed to reach the controller at ${ctx.controller}: ${connectFailureReason(details)}`, { cause: err });
  }
  if (e.code === 4) {
    return new BerthError(ErrorCode.DeadlineExceeded, `the controller at ${ctx.controller} did not answer within ${Math.round(ctx.timeoutMs / 1000)} s`, { cause: err });
  }
  return fromGrpcError(err);
}

/**
 * One unary call `client[method](req)` on a client of cli/rpc.ts with the
 * CLI's deadline (`deadlineMs` overrides it for slow calls); errors become
 * cliError. Closes the client afterwards.
 */
export async function unaryOnce<Res>(
  ctx: CliContext, client: { close(): void }, method: string, req: object, deadlineMs = ctx.timeoutMs,
): Promise<Res> {
  const { Metadata } = await import('./rpc.js');
  type Fn = (req: object, md: InstanceType<typeof Metadata>, opts: { deadline: number }, cb: (err: ServiceError | null, res: Res) => void) => unknown;
  try {
    return await new Promise<Res>((resolve, reject) => {
      ((client as unknown as Record<string, Fn>)[method] as Fn).call(client, req, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, r) => (err ? reject(cliError(err, ctx)) : resolve(r)));
    });
  } finally {
    client.close();
  }
}

/** Connects lazily (cli/rpc.ts dials on the first call). Call close() when done. */
export async function openControllerApi(ctx: CliContext): Promise<ControllerApi> {
  const started = Date.now();
  const grpc = await import('./rpc.js');
  const gen = await import('../proto/gen/berth/v1/controller.js');
  ctx.trace(`loaded gRPC client in ${Date.now() - started} ms`);
  const creds = grpc.credentials.createInsecure();
  const options = { 'grpc.enable_retries': 0 };
  const workloads = grpc.makeClient(gen.WorkloadServiceService, ctx.controller, creds, options);
  const nodes = grpc.makeClient(gen.NodeServiceService, ctx.controller, creds, options);
  const system = grpc.makeClient(gen.SystemServiceService, ctx.controller, creds, options);
  const containers = grpc.makeClient(gen.ContainerServiceService, ctx.controller, creds, options);
  const events = grpc.makeClient(gen.EventServiceService, ctx.controller, creds, options);

  type Callback<Res> = (err: ServiceError | null, res: Res) => void;
  function call<Res>(what: string, invoke: (md: InstanceType<typeof grpc.Metadata>, opts: { deadline: number }, cb: Callback<Res>) => unknown): Promise<Res> {
    const t0 = Date.now();
    return new Promise<Res>((resolve, reject) => {
      invoke(new grpc.Metadata(), { deadline: Date.now() + ctx.timeoutMs }, (err, res) => {
        ctx.trace(`${what} to ${ctx.controller}: ${err ? `error code ${err.code}` : 'ok'} in ${Date.now() - t0} ms`);
        if (err) reject(cliError(err, ctx));
        else resolve(res);
      });
    });
  }

  return {
    apply: (req) => call('WorkloadService.Apply', (md, o, cb) => workloads.apply(req, md, o, cb)),
    getWorkload: (name) => call('WorkloadService.Get', (md, o, cb) => workloads.get({ name }, md, o, cb)),
    listWorkloads: (selector) => call('WorkloadService.List', (md, o, cb) => workloads.list({ selector }, md, o, cb)),
    deleteWorkloads: (req) => call('WorkloadService.Delete', (md, o, cb) => workloads.delete(req, md, o, cb)),
    scale: (req) => call('WorkloadService.Scale', (md, o, cb) => workloads.scale(req, md, o, cb)),
    history: (name) => call('WorkloadService.History', (md, o, cb) => workloads.history({ name }, md, o, cb)),
    rolloutStatus: (name) => call('WorkloadService.RolloutStatus', (md, o, cb) => workloads.rolloutStatus({ name }, md, o, cb)),
    undo: (req) => call('WorkloadService.Undo', (md, o, cb) => workloads.undo(req, md, o, cb)),
    restart: (name) => call('WorkloadService.Restart', (md, o, cb) => workloads.restart({ name }, md, o, cb)),
    autoscale: (req) => call('WorkloadService.Autoscale', (md, o, cb) => workloads.autoscale(req, md, o, cb)),
    listNodes: () => call('NodeService.List', (md, o, cb) => nodes.list({}, md, o, cb)),
    version: () => call('SystemService.Version', (md, o, cb) => system.version({}, md, o, cb)),
    runContainer: (req) => call('ContainerService.Run', (md, o, cb) => containers.run(req, md, { deadline: o.deadline + 5 * 60_000 }, cb)),
    listContainers: (req) => call('ContainerService.List', (md, o, cb) => containers.list({ all: false, selector: {}, node: '', workload: '', ...req }, md, o, cb)),
    removeContainers: (req) => call('ContainerService.Remove', (md, o, cb) => containers.remove(req, md, o, cb)),
    // A stop waits out the grace period on each container: give it that long on top of the deadline.
    stopContainers: (req) => call('ContainerService.Stop', (md, o, cb) => containers.stop(req, md, { deadline: o.deadline + req.containers.length * ((req.graceSeconds || 10) + 5) * 1000 }, cb)),
    logs: (req, onLine, signal) => new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const stream = containers.logs(req, new grpc.Metadata(), req.follow ? {} : { deadline: Date.now() + ctx.timeoutMs });
      const onAbort = (): void => stream.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (line: LogLine) => onLine(line));
      stream.on('error', (err: ServiceError) => {
        signal?.removeEventListener('abort', onAbort);
        ctx.trace(`ContainerService.Logs to ${ctx.controller}: error code ${err.code} in ${Date.now() - t0} ms`);
        if (err.code === 1 && signal?.aborted) resolve();
        else reject(cliError(err, ctx));
      });
      stream.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        ctx.trace(`ContainerService.Logs to ${ctx.controller}: ended in ${Date.now() - t0} ms`);
        resolve();
      });
    }),
    cordonNode: (name, cordoned) => call('NodeService.Cordon', (md, o, cb) => nodes.cordon({ name, cordoned }, md, o, cb)),
    drainNode: (name) => call('NodeService.Drain', (md, o, cb) => nodes.drain({ name }, md, o, cb)),
    removeNode: (name, force) => call('NodeService.Remove', (md, o, cb) => nodes.remove({ name, force }, md, o, cb)),
    listEvents: (req) => call('EventService.List', (md, o, cb) => events.list({ sinceUnixMs: 0, limit: 0, workload: '', kind: '', ...req }, md, o, cb)),
    close() {
      workloads.close();
      nodes.close();
      system.close();
      containers.close();
      events.close();
    },
  };
}

/** Runs `fn` with an open API and closes it afterwards. */
export async function withController<T>(ctx: CliContext, fn: (api: ControllerApi) => Promise<T>): Promise<T> {
  const api = await openControllerApi(ctx);
  try {
    return await fn(api);
  } finally {
    api.close();
  }
}
