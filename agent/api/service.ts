/**
 * AgentService handlers: requests from the wire (hostile) are validated,
 * turned into calls on the container manager and the image service, and
 * every error leaves as a gRPC status through toGrpcStatus (the message
 * names the field or the thing at fault).
 */
import type { ServerWritableStream } from '@grpc/grpc-js';
import { status as GrpcCode } from '@grpc/grpc-js';
import { ErrorCode, InvalidArgumentError, isCode, messageOf, toGrpcStatus, type Logger } from '../../lib/index.js';
import type { AgentLogsRequest, AgentServiceServer, PullImageRequest } from '../../proto/gen/berth/v1/agent.js';
import type { LogLine, PullProgress } from '../../proto/gen/berth/v1/types.js';
import type { ContainerManager } from '../containers/index.js';
import { pullWithProgress, toProtoImageRecord, toProtoImageRemoval, type ImageService } from '../images/index.js';
import type { ContainerRuntime, LogEntry } from '../runtime/index.js';
import { parseImageReference } from '../../lib/index.js';
import { checkId, unary } from './call.js';
import { containerVerbHandlers } from './container-verbs.js';

export interface AgentServiceDeps {
  node: string;
  containers: ContainerManager;
  images: Pick<ImageService, 'pull' | 'list' | 'removeMany' | 'prune' | 'search'>;
  runtime: Pick<ContainerRuntime, 'logs' | 'state'>;
  logger: Logger;
  /** A sink per pull for its progress (NATS); the stream gets every message regardless. */
  pullProgressSink?: () => (p: PullProgress) => void;
  /** Default StopContainer grace when the request gives 0; default 10 s. */
  defaultGraceSeconds?: number;
}

const MAX_GRACE_SECONDS = 3600;
const MAX_TAIL = 1_000_000;

/** Builds the AgentService implementation. */
export function agentServiceHandlers(deps: AgentServiceDeps): AgentServiceServer {
  const log = deps.logger.child({ component: 'api' });
  const { containers } = deps;
  const defaultGrace = deps.defaultGraceSeconds ?? 10;

  const streamFail = (call: ServerWritableStream<unknown, unknown>, err: unknown, method: string): void => {
    const s = toGrpcStatus(err);
    if (s.code === GrpcCode.INTERNAL) log.error('agent API call failed', { method, reason: messageOf(err) });
    // grpc-js ends a server stream with a status when the call emits 'error' with a code.
    call.emit('error', Object.assign(new Error(s.details), { code: s.code, details: s.details }));
  };

  return {
    ...containerVerbHandlers({ containers, logger: deps.logger }),
    runContainer: unary(log, 'RunContainer', (req, signal) => containers.run(req, { signal })),

    stopContainer: unary(log, 'StopContainer', async (req) => {
      checkId(req.id);
      if (req.graceSeconds > MAX_GRACE_SECONDS) {
        throw new InvalidArgumentError(`grace_seconds: expected at most ${MAX_GRACE_SECONDS}, got ${req.graceSeconds}`, { field: 'grace_seconds' });
      }
      return containers.stop(req.id, { graceMs: (req.graceSeconds || defaultGrace) * 1000 });
    }),

    removeContainer: unary(log, 'RemoveContainer', async (req) => {
      checkId(req.id);
      await containers.remove(req.id, { force: req.force });
      return {};
    }),

    listContainers: unary(log, 'ListContainers', async () => ({ containers: containers.list() })),

    listImages: unary(log, 'ListImages', async () => ({
      images: (await deps.images.list()).map((r) => toProtoImageRecord(r, deps.node)),
    })),

    removeImages: unary(log, 'RemoveImages', async (req) => {
      if (req.references.length === 0 || req.references.length > 100) {
        throw new InvalidArgumentError(`references: expected 1 to 100 image references, got ${req.references.length}`, { field: 'references' });
      }
      for (const ref of req.references) if (typeof ref !== 'string' || ref === '' || ref.length > 512) throw new InvalidArgumentError(`references: expected image references of 1 to 512 characters, got "${String(ref).slice(0, 40)}"`, { field: 'references' });
      return toProtoImageRemoval(await deps.images.removeMany(req.references, { force: req.force, dryRun: req.dryRun }), deps.node);
    }),

    pruneImages: unary(log, 'PruneImages', async (req) => toProtoImageRemoval(await deps.images.prune({ all: req.all }), deps.node)),

    searchImages: unary(log, 'SearchImages', async (req, signal) => ({
      results: await deps.images.search(req.term, { ...(req.registry ? { registry: req.registry } : {}), limit: req.limit || 25, signal }),
    })),

    pullImage: (call: ServerWritableStream<PullImageRequest, PullProgress>): void => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      void (async () => {
        try {
          parseImageReference(call.request.reference, { field: 'reference' });
        } catch (err) {
          streamFail(call, err, 'PullImage');
          return;
        }
        const sink = deps.pullProgressSink?.();
        const out = await pullWithProgress(deps.images, call.request.reference, deps.node, (p) => {
          sink?.(p);
          if (!call.cancelled) call.write(p);
        }, { signal: ac.signal });
        if (out.error !== undefined) log.warn('image pull failed', { image: call.request.reference, reason: messageOf(out.error) });
        call.end();
      })();
    },

    logs: (call: ServerWritableStream<AgentLogsRequest, LogLine>): void => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      void (async () => {
        try {
          const req = call.request;
          checkId(req.id);
          if (req.tail > MAX_TAIL) throw new InvalidArgumentError(`tail: expected at most ${MAX_TAIL}, got ${req.tail}`, { field: 'tail' });
          if (req.sinceUnixMs < 0) throw new InvalidArgumentError(`since_unix_ms: expected 0 (unset) or a time in milliseconds, got ${req.sinceUnixMs}`, { field: 'since_unix_ms' });
          const attempts = containers.attempts(req.id);
          const since = req.sinceUnixMs > 0 ? new Date(req.sinceUnixMs) : undefined;
          // The previous attempt's output first (a restarted container's logs continue), then the current one.
          const sources: { id: string; follow: boolean }[] = [
            ...(attempts.previous !== undefined ? [{ id: attempts.previous, follow: false }] : []),
            { id: attempts.current, follow: req.follow },
          ];
          const send = (e: LogEntry): void => {
            const line: LogLine = { unixMs: Date.parse(e.time) || 0, stream: e.stream, data: Buffer.from(e.partial ? e.text : `${e.text}\n`), source: '' };
            call.write(line);
          };
          const read = async (id: string, tail?: number, follow = false): Promise<LogEntry[]> => {
            const out: LogEntry[] = [];
            try {
              for await (const e of deps.runtime.logs(id, { since, signal: ac.signal, ...(tail !== undefined ? { tail } : {}), follow })) {
                if (follow) send(e);
                else out.push(e);
              }
            } catch (err) {
              // The previous attempt may be gone (e.g. the host restarted); its output with it.
              if (id === attempts.previous && isCode(err, ErrorCode.NotFound)) return [];
              throw err;
            }
            return out;
          };
          if (req.tail > 0) {
            // tail counts across both attempts: the previous attempt's last lines fill up what the current one lacks.
            const current = (await read(attempts.current)).length;
            if (current < req.tail && attempts.previous !== undefined) {
              for (const e of await read(attempts.previous, req.tail - current)) send(e);
            }
            if (req.follow) await read(attempts.current, req.tail, true);
            else for (const e of await read(attempts.current, req.tail)) send(e);
          } else {
            for (const s of sources) {
              if (s.follow) await read(s.id, undefined, true);
              else for (const e of await read(s.id)) send(e);
            }
          }
          call.end();
        } catch (err) {
          if (ac.signal.aborted) return;
          streamFail(call, err, 'Logs');
        }
      })();
    },
  };
}
