/**
 * AgentService handlers of the container verbs: start, kill, wait, rename,
 * inspect, top, update, stats and cp (tar streams in and out of a container's
 * root filesystem). Requests are hostile: ids, names, signals, limits and
 * paths are checked here or by the manager before anything changes.
 */
import { once } from 'node:events';
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import { FailedPreconditionError, InvalidArgumentError, packPath, unpackTo, type Logger, type Unpacker } from '../../lib/index.js';
import type { AgentCopyFromRequest, AgentServiceServer } from '../../proto/gen/berth/v1/agent.js';
import type { CopyToContainerRequest, CopyToContainerResponse, TarChunk } from '../../proto/gen/berth/v1/containers.js';
import type { ContainerManager } from '../containers/index.js';
import { checkId, failure, unary as unaryHandler } from './call.js';

export interface ContainerVerbDeps {
  containers: ContainerManager;
  logger: Logger;
  /** Largest archive accepted by CopyToContainer, bytes; default 4 GiB. */
  maxCopyBytes?: number;
}

type VerbMethods = 'startContainer' | 'killContainer' | 'waitContainer' | 'renameContainer' | 'inspectContainer' | 'topContainer'
  | 'updateContainer' | 'containerStats' | 'copyFromContainer' | 'copyToContainer';

const MAX_IDS = 1000;
const CHUNK = 64 * 1024;


/** Files every container gets bind-mounted from its bundle (agent/runtime/bundle.ts). */
const AGENT_FILES = ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'];

/** An absolute container path that is not on a mount (cp reads and writes the root filesystem only). */
function checkContainerPath(path: string, mounts: readonly string[], name: string): void {
  if (!path.startsWith('/')) throw new InvalidArgumentError(`path: expected an absolute path inside the container, got "${path}"`, { field: 'path' });
  if (path.length > 4096) throw new InvalidArgumentError(`path: expected at most 4096 characters, got ${path.length}`, { field: 'path' });
  const clean = `/${path.split('/').filter((p) => p !== '' && p !== '.').join('/')}`;
  if (AGENT_FILES.includes(clean)) {
    throw new FailedPreconditionError(`failed to copy "${path}" in container "${name}": the agent provides it (a bind-mounted file); expected a path of the container's own filesystem`);
  }
  for (const m of mounts) {
    const d = `/${m.split('/').filter((p) => p !== '' && p !== '.').join('/')}`;
    if (clean === d || clean.startsWith(`${d}/`) || d.startsWith(`${clean === '/' ? '' : clean}/`)) {
      throw new FailedPreconditionError(`failed to copy "${path}" in container "${name}": it is on or holds the mount "${m}"; expected a path of the container's own filesystem`);
    }
  }
}

function checkResource(field: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || (v > 0 && v < min)) {
    throw new InvalidArgumentError(`resources.${field}: expected 0 (keep) or at least ${min}, got ${v}`, { field: `resources.${field}` });
  }
}

export function containerVerbHandlers(deps: ContainerVerbDeps): Pick<AgentServiceServer, VerbMethods> {
  const log = deps.logger.child({ component: 'api' });
  const { containers } = deps;

  const fail = (method: string, err: unknown): { code: number; details: string } => failure(log, method, err);
  const unary = <Req, Res>(method: string, fn: (req: Req, signal: AbortSignal) => Promise<Res>) => unaryHandler(log, method, fn);

  return {
    startContainer: unary('StartContainer', async (req) => {
      checkId(req.id);
      return containers.start(req.id);
    }),

    killContainer: unary('KillContainer', async (req) => {
      checkId(req.id);
      if (req.signal.length > 32) throw new InvalidArgumentError(`signal: expected a signal name or number, got ${req.signal.length} characters`, { field: 'signal' });
      return containers.kill(req.id, req.signal);
    }),

    waitContainer: unary('WaitContainer', async (req, signal) => {
      checkId(req.id);
      return containers.wait(req.id, { signal });
    }),

    renameContainer: unary('RenameContainer', async (req) => {
      checkId(req.id);
      return containers.rename(req.id, req.name);
    }),

    inspectContainer: unary('InspectContainer', async (req) => {
      checkId(req.id);
      return containers.details(req.id);
    }),

    topContainer: unary('TopContainer', async (req) => {
      checkId(req.id);
      return containers.top(req.id);
    }),

    updateContainer: unary('UpdateContainer', async (req) => {
      checkId(req.id);
      const r = req.resources ?? { cpuMillis: 0, memoryBytes: 0, pids: 0 };
      checkResource('memory_bytes', r.memoryBytes, 4 * 1024 * 1024);
      checkResource('cpu_millis', r.cpuMillis, 10);
      checkResource('pids', r.pids, 1);
      if (r.memoryBytes === 0 && r.cpuMillis === 0 && r.pids === 0) {
        throw new InvalidArgumentError('resources: expected at least one of memory_bytes, cpu_millis or pids to change, got none', { field: 'resources' });
      }
      return containers.update(req.id, r);
    }),

    containerStats: unary('ContainerStats', async (req) => {
      if (req.ids.length > MAX_IDS) throw new InvalidArgumentError(`ids: expected at most ${MAX_IDS}, got ${req.ids.length}`, { field: 'ids' });
      req.ids.forEach((id, i) => checkId(id, `ids[${i}]`));
      return { stats: await containers.stats(req.ids) };
    }),

    copyFromContainer: (call: ServerWritableStream<AgentCopyFromRequest, TarChunk>): void => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      void (async () => {
        try {
          checkId(call.request.id);
          const { rootfs, name, mounts } = await containers.rootfsOf(call.request.id);
          checkContainerPath(call.request.path, mounts, name);
          let pending: Buffer[] = [];
          let size = 0;
          const flush = async (): Promise<void> => {
            if (size === 0) return;
            const data = Buffer.concat(pending);
            pending = [];
            size = 0;
            if (!call.write({ data })) await once(call, 'drain', { signal: ac.signal });
          };
          const res = await packPath(rootfs, call.request.path, {
            signal: ac.signal,
            write: async (chunk) => {
              pending.push(chunk);
              size += chunk.length;
              if (size >= CHUNK) await flush();
            },
          });
          await flush();
          log.info('copied from container', { containerId: call.request.id, path: call.request.path, entries: res.entries, bytes: res.bytes });
          call.end();
        } catch (err) {
          if (ac.signal.aborted) return;
          const s = fail('CopyFromContainer', err);
          call.emit('error', Object.assign(new Error(s.details), { code: s.code, details: s.details }));
        }
      })();
    },

    copyToContainer: (call: ServerReadableStream<CopyToContainerRequest, CopyToContainerResponse>, callback: sendUnaryData<CopyToContainerResponse>): void => {
      void (async () => {
        let unpacker: Unpacker | undefined;
        let id = '';
        let path = '';
        try {
          for await (const msg of call as AsyncIterable<CopyToContainerRequest>) {
            const part = msg.part;
            if (part?.$case === 'header') {
              if (unpacker) throw new InvalidArgumentError('header: expected one header, got a second one', { field: 'header' });
              id = part.value.container;
              path = part.value.path;
              checkId(id, 'header.container');
              const { rootfs, name, mounts } = await containers.rootfsOf(id);
              checkContainerPath(path, mounts, name);
              unpacker = unpackTo(rootfs, path, deps.maxCopyBytes !== undefined ? { maxBytes: deps.maxCopyBytes } : {});
            } else if (part?.$case === 'data') {
              if (!unpacker) throw new InvalidArgumentError('header: expected the header (container and path) before any data', { field: 'header' });
              unpacker.write(Buffer.from(part.value));
            }
          }
          if (!unpacker) throw new InvalidArgumentError('header: expected the header (container and path), got nothing', { field: 'header' });
          const res = unpacker.finish();
          unpacker = undefined;
          log.info('copied into container', { containerId: id, path, entries: res.entries, bytes: res.bytes });
          callback(null, res);
        } catch (err) {
          unpacker?.abort();
          const s = fail('CopyToContainer', err);
          callback({ code: s.code, details: s.details });
        }
      })();
    },
  };
}
