/**
 * The controller's clients to agents: the only place in controller/ that dials
 * an agent (AgentService in proto/berth/v1/agent.proto).
 *
 * Vocabulary
 * - agent: the AgentService server of one node, at the address in its node
 *   record (NodeSpec.address).
 * - pool: one gRPC channel per node, made on first use and replaced when the
 *   node's address changes (the agent re-registered elsewhere).
 *
 * Lifecycle: built by main.ts, shared by the reconciler and the API, closed
 * once with close(). Every call takes `{ signal }` and has a deadline; errors
 * are AgentCallError (the agent's own status code kept, the node named).
 */
import * as grpc from '@grpc/grpc-js';
import { BerthError, CancelledError, InternalError, UnavailableError, fromGrpcError, isCode, silentLogger, type Logger } from '../../lib/index.js';
import {
  AgentServiceClient,
  type AgentLogsRequest, type ListImagesResponse, type PullImageRequest, type RemoveContainerRequest, type RunContainerRequest, type StopContainerRequest,
  type PruneImagesRequest, type RemoveImagesRequest, type SearchImagesRequest, type SearchImagesResponse,
} from '../../proto/gen/berth/v1/agent.js';
import type { AgentCopyFromRequest, ContainerIdRequest, KillContainerRequest, RenameContainerOnNodeRequest, UpdateContainerRequest } from '../../proto/gen/berth/v1/agent.js';
import type { ContainerDetails, ContainerProcesses, ContainerStats, CopyToContainerRequest, CopyToContainerResponse, TarChunk, WaitResult } from '../../proto/gen/berth/v1/containers.js';
import { AgentBatchServiceClient, type RunContainersResponse } from '../../proto/gen/berth/v1/batch.js';
import type { Container, ImageRecord, ImageRemoval, ImageSearchResult, LogLine, PullProgress } from '../../proto/gen/berth/v1/types.js';

export interface CallOptions {
  signal?: AbortSignal;
}

/** A failed call to an agent; `code` is the agent's status mapped to a Berth code. */
export class AgentCallError extends BerthError {
  override name = 'AgentCallError';
  readonly nodeId: string;
  constructor(nodeId: string, source: BerthError) {
    super(source.code, source.message, { cause: source });
    this.nodeId = nodeId;
  }
}

/** The outcome of one container of a RunContainers batch: the container, or why it failed. */
export type RunOutcome = { id: string; container: Container; error?: undefined } | { id: string; container?: undefined; error: AgentCallError };

/** What the controller can ask one agent. */
export interface AgentClient {
  readonly node: string;
  readonly address: string;
  /** Idempotent by `req.id`: running an id that already exists returns it. */
  runContainer(req: RunContainerRequest, opts?: CallOptions): Promise<Container>;
  /**
   * Runs many containers in one round trip (AgentBatchService.RunContainers),
   * each as runContainer would; one outcome per request, in order. An agent
   * without the batch service gets one RunContainer per container instead.
   * Rejects only when the call as a whole fails (agent unreachable, cancelled).
   * Optional so that test doubles need not have it; the reconciler then calls
   * runContainer per container.
   */
  runContainers?(reqs: readonly RunContainerRequest[], opts?: CallOptions): Promise<RunOutcome[]>;
  stopContainer(req: StopContainerRequest, opts?: CallOptions): Promise<Container>;
  removeContainer(req: RemoveContainerRequest, opts?: CallOptions): Promise<void>;
  listContainers(opts?: CallOptions): Promise<Container[]>;
  /** Streams log lines until the agent ends the stream or the signal fires. */
  logs(req: AgentLogsRequest, opts?: CallOptions): AsyncIterable<LogLine>;
  /** Streams per-layer progress of a pull; the last message has finished set. */
  pullImage(req: PullImageRequest, opts?: CallOptions): AsyncIterable<PullProgress>;
  listImages(opts?: CallOptions): Promise<ImageRecord[]>;
  startContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<Container>;
  killContainer(req: KillContainerRequest, opts?: CallOptions): Promise<Container>;
  /** No deadline: resolves when the container exits, or rejects when `signal` fires. */
  waitContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<WaitResult>;
  renameContainer(req: RenameContainerOnNodeRequest, opts?: CallOptions): Promise<Container>;
  inspectContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<ContainerDetails>;
  topContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<ContainerProcesses>;
  updateContainer(req: UpdateContainerRequest, opts?: CallOptions): Promise<Container>;
  containerStats(ids: string[], opts?: CallOptions): Promise<ContainerStats[]>;
  /** Streams a tar of a path in the container. */
  copyFromContainer(req: AgentCopyFromRequest, opts?: CallOptions): AsyncIterable<TarChunk>;
  /** Sends a header then the tar pieces `chunks` yields; resolves with the agent's answer. */
  copyToContainer(header: { container: string; path: string }, chunks: AsyncIterable<Buffer>, opts?: CallOptions): Promise<CopyToContainerResponse>;
  /** Removes images (all checked first; FAILED_PRECONDITION when one is in use and not forced). */
  removeImages(req: RemoveImagesRequest, opts?: CallOptions): Promise<ImageRemoval>;
  pruneImages(req: PruneImagesRequest, opts?: CallOptions): Promise<ImageRemoval>;
  searchImages(req: SearchImagesRequest, opts?: CallOptions): Promise<ImageSearchResult[]>;
}

/** Finds the client for a node. */
export interface AgentDialer {
  agent(node: string, address: string): AgentClient;
}

export interface AgentPoolOptions {
  logger?: Logger;
  /** Deadline of RunContainer (it may pull the image), ms; default 120000. */
  runTimeoutMs?: number;
  /** Deadline of other unary calls, ms; default 15000. */
  timeoutMs?: number;
}

/** A generated client's unary method, called with its client as `this`. */
export type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall;

/**
 * One unary call to an agent: `fn` on `client` with a deadline `timeoutMs`
 * from now, cancelled when `opts.signal` aborts; errors are AgentCallError
 * naming the method, node and address.
 */
export function agentUnary<Req, Res>(
  to: { node: string; address: string }, client: grpc.Client, method: string, fn: Unary<Req, Res>, req: Req, timeoutMs: number, opts?: CallOptions,
): Promise<Res> {
  const what = `call ${method} on node "${to.node}" at "${to.address}"`;
  if (opts?.signal?.aborted) return Promise.reject(new CancelledError(`failed to ${what}: cancelled`));
  return new Promise<Res>((resolve, reject) => {
    const call = fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      opts?.signal?.removeEventListener('abort', onAbort);
      if (err) reject(new AgentCallError(to.node, fromGrpcError(err, what)));
      else resolve(res);
    });
    const onAbort = (): void => call.cancel();
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

class PooledAgent implements AgentClient {
  constructor(
    readonly node: string,
    readonly address: string,
    readonly client: AgentServiceClient,
    private readonly runTimeoutMs: number,
    private readonly timeoutMs: number,
  ) {}

  private unary<Req, Res>(method: string, fn: Unary<Req, Res>, req: Req, timeoutMs: number, opts?: CallOptions, client: grpc.Client = this.client): Promise<Res> {
    return agentUnary(this, client, method, fn, req, timeoutMs, opts);
  }

  runContainer(req: RunContainerRequest, opts?: CallOptions): Promise<Container> {
    return this.unary('RunContainer', this.client.runContainer as Unary<RunContainerRequest, Container>, req, this.runTimeoutMs, opts);
  }

  /** The batch client, on the same channel (connection) as `client`. */
  private batch: AgentBatchServiceClient | undefined;
  /** The agent answered UNIMPLEMENTED to RunContainers (an older agent): one call per container from then on. */
  private batchUnsupported = false;

  async runContainers(reqs: readonly RunContainerRequest[], opts?: CallOptions): Promise<RunOutcome[]> {
    if (reqs.length === 0) return [];
    if (!this.batchUnsupported) {
      this.batch ??= new AgentBatchServiceClient(this.address, grpc.credentials.createInsecure(), { channelOverride: this.client.getChannel() });
      try {
        const res = await this.unary('RunContainers', this.batch.runContainers as Unary<{ containers: RunContainerRequest[] }, RunContainersResponse>, { containers: [...reqs] }, this.runTimeoutMs, opts, this.batch);
        const what = (id: string): string => `run container "${id}" on node "${this.node}" at "${this.address}"`;
        const byId = new Map(res.results.map((r) => [r.id, r]));
        return reqs.map((req): RunOutcome => {
          const r = byId.get(req.id);
          if (!r) return { id: req.id, error: new AgentCallError(this.node, new InternalError(`failed to ${what(req.id)}: the agent's answer does not mention it`)) };
          if (r.code === 0 && r.container) return { id: req.id, container: r.container };
          return { id: req.id, error: new AgentCallError(this.node, fromGrpcError({ code: r.code === 0 ? grpc.status.INTERNAL : r.code, details: r.message || 'no container in the answer' }, what(req.id))) };
        });
      } catch (err) {
        if (!isCode(err, 'unimplemented')) throw err;
        this.batchUnsupported = true;
      }
    }
    return Promise.all(reqs.map((req) => this.runContainer(req, opts).then(
      (container): RunOutcome => ({ id: req.id, container }),
      (err: unknown): RunOutcome => ({ id: req.id, error: err instanceof AgentCallError ? err : new AgentCallError(this.node, fromGrpcError(err)) }),
    )));
  }

  stopContainer(req: StopContainerRequest, opts?: CallOptions): Promise<Container> {
    return this.unary('StopContainer', this.client.stopContainer as Unary<StopContainerRequest, Container>, req, this.timeoutMs + req.graceSeconds * 1000, opts);
  }

  async removeContainer(req: RemoveContainerRequest, opts?: CallOptions): Promise<void> {
    await this.unary('RemoveContainer', this.client.removeContainer as Unary<RemoveContainerRequest, unknown>, req, this.timeoutMs, opts);
  }

  async listContainers(opts?: CallOptions): Promise<Container[]> {
    const res = await this.unary('ListContainers', this.client.listContainers as Unary<object, { containers: Container[] }>, {}, this.timeoutMs, opts);
    return res.containers;
  }

  logs(req: AgentLogsRequest, opts?: CallOptions): AsyncIterable<LogLine> {
    return this.serverStream<LogLine>('Logs', () => this.client.logs(req), opts);
  }

  pullImage(req: PullImageRequest, opts?: CallOptions): AsyncIterable<PullProgress> {
    return this.serverStream<PullProgress>('PullImage', () => this.client.pullImage(req), opts);
  }

  async listImages(opts?: CallOptions): Promise<ImageRecord[]> {
    const res = await this.unary('ListImages', this.client.listImages as Unary<object, ListImagesResponse>, {}, this.timeoutMs, opts);
    return res.images;
  }

  // Removing and pruning delete files (a large image can take seconds on a busy disk): the run deadline.
  removeImages(req: RemoveImagesRequest, opts?: CallOptions): Promise<ImageRemoval> {
    return this.unary('RemoveImages', this.client.removeImages as Unary<RemoveImagesRequest, ImageRemoval>, req, this.runTimeoutMs, opts);
  }

  pruneImages(req: PruneImagesRequest, opts?: CallOptions): Promise<ImageRemoval> {
    return this.unary('PruneImages', this.client.pruneImages as Unary<PruneImagesRequest, ImageRemoval>, req, this.runTimeoutMs, opts);
  }

  async searchImages(req: SearchImagesRequest, opts?: CallOptions): Promise<ImageSearchResult[]> {
    const res = await this.unary('SearchImages', this.client.searchImages as Unary<SearchImagesRequest, SearchImagesResponse>, req, this.runTimeoutMs, opts);
    return res.results;
  }

  startContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<Container> {
    return this.unary('StartContainer', this.client.startContainer as Unary<ContainerIdRequest, Container>, req, this.runTimeoutMs, opts);
  }

  killContainer(req: KillContainerRequest, opts?: CallOptions): Promise<Container> {
    return this.unary('KillContainer', this.client.killContainer as Unary<KillContainerRequest, Container>, req, this.timeoutMs, opts);
  }

  waitContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<WaitResult> {
    // A wait lasts as long as the container runs: about a year stands for no deadline.
    return this.unary('WaitContainer', this.client.waitContainer as Unary<ContainerIdRequest, WaitResult>, req, 365 * 24 * 3600_000, opts);
  }

  renameContainer(req: RenameContainerOnNodeRequest, opts?: CallOptions): Promise<Container> {
    return this.unary('RenameContainer', this.client.renameContainer as Unary<RenameContainerOnNodeRequest, Container>, req, this.timeoutMs, opts);
  }

  inspectContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<ContainerDetails> {
    return this.unary('InspectContainer', this.client.inspectContainer as Unary<ContainerIdRequest, ContainerDetails>, req, this.timeoutMs, opts);
  }

  topContainer(req: ContainerIdRequest, opts?: CallOptions): Promise<ContainerProcesses> {
    return this.unary('TopContainer', this.client.topContainer as Unary<ContainerIdRequest, ContainerProcesses>, req, this.timeoutMs, opts);
  }

  updateContainer(req: UpdateContainerRequest, opts?: CallOptions): Promise<Container> {
    return this.unary('UpdateContainer', this.client.updateContainer as Unary<UpdateContainerRequest, Container>, req, this.timeoutMs, opts);
  }

  async containerStats(ids: string[], opts?: CallOptions): Promise<ContainerStats[]> {
    const res = await this.unary('ContainerStats', this.client.containerStats as Unary<{ ids: string[] }, { stats: ContainerStats[] }>, { ids }, this.timeoutMs, opts);
    return res.stats;
  }

  copyFromContainer(req: AgentCopyFromRequest, opts?: CallOptions): AsyncIterable<TarChunk> {
    return this.serverStream<TarChunk>('CopyFromContainer', () => this.client.copyFromContainer(req), opts);
  }

  copyToContainer(header: { container: string; path: string }, chunks: AsyncIterable<Buffer>, opts?: CallOptions): Promise<CopyToContainerResponse> {
    const what = `call CopyToContainer on node "${this.node}" at "${this.address}"`;
    return new Promise<CopyToContainerResponse>((resolve, reject) => {
      const stream = this.client.copyToContainer((err: grpc.ServiceError | null, res?: CopyToContainerResponse) => {
        opts?.signal?.removeEventListener('abort', onAbort);
        if (err) reject(new AgentCallError(this.node, fromGrpcError(err, what)));
        else resolve(res as CopyToContainerResponse);
      });
      const onAbort = (): void => stream.cancel();
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      void (async () => {
        try {
          const write = async (msg: CopyToContainerRequest): Promise<void> => {
            if (!stream.write(msg)) await new Promise<void>((r) => stream.once('drain', () => r()));
          };
          await write({ part: { $case: 'header', value: header } });
          for await (const data of chunks) await write({ part: { $case: 'data', value: data } });
          stream.end();
        } catch (err) {
          stream.cancel();
          reject(err);
        }
      })();
    });
  }

  /** Yields the messages of a server stream; a cancel by `signal` ends it quietly. */
  private async *serverStream<T>(method: string, open: () => grpc.ClientReadableStream<unknown>, opts?: CallOptions): AsyncIterable<T> {
    const what = `call ${method} on node "${this.node}" at "${this.address}"`;
    const stream = open();
    const onAbort = (): void => stream.cancel();
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const msg of stream as AsyncIterable<T>) yield msg;
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code === grpc.status.CANCELLED && opts?.signal?.aborted) return;
      throw new AgentCallError(this.node, fromGrpcError(err, what));
    } finally {
      opts?.signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }
}

export class AgentPool implements AgentDialer {
  private readonly agents = new Map<string, PooledAgent>();
  private readonly logger: Logger;
  private closed = false;

  constructor(private readonly opts: AgentPoolOptions = {}) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'agents' });
  }

  agent(node: string, address: string): AgentClient {
    if (this.closed) throw new UnavailableError(`failed to reach the agent of node "${node}": the pool is closed`);
    const have = this.agents.get(node);
    if (have && have.address === address) return have;
    if (have) {
      have.client.close();
      this.logger.info('agent address changed', { node, address, previous: have.address });
    }
    const client = new AgentServiceClient(address, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 10000,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
    });
    const a = new PooledAgent(node, address, client, this.opts.runTimeoutMs ?? 120000, this.opts.timeoutMs ?? 15000);
    this.agents.set(node, a);
    return a;
  }

  close(): void {
    this.closed = true;
    for (const a of this.agents.values()) a.client.close();
    this.agents.clear();
  }
}
