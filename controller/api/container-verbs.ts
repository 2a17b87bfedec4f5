/**
 * ContainerService verbs beyond run/list/logs/rm/stop: start, restart, kill,
 * wait, rename, inspect, top, update, stats and cp. Each resolves names and
 * unambiguous id prefixes against every container the controller knows
 * (resolveContainer), checks the whole request before changing anything, and
 * routes the call to the agent of the container's node.
 */
import { once } from 'node:events';
import type { ServerReadableStream, ServerWritableStream, sendUnaryData } from '@grpc/grpc-js';
import {
  AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, UnavailableError, isCode, messageOf, parseSignal, pause, toGrpcStatus,
} from '../../lib/index.js';
import type {
  ContainerServiceServer, ContainerStatsRequest, ContainerStatsResponse, CopyFromContainerRequest, InspectContainersRequest, KillContainersRequest,
  KillContainersResponse, RenameContainerRequest, RestartContainersRequest, RestartContainersResponse, StartContainersRequest, StartContainersResponse,
  TopContainerRequest, UpdateContainersRequest, UpdateContainersResponse, WaitContainerRequest, InspectContainersResponse,
} from '../../proto/gen/berth/v1/controller.js';
import type { ContainerDetails, ContainerProcesses, ContainerStats, CopyToContainerRequest, CopyToContainerResponse, TarChunk, WaitResult } from '../../proto/gen/berth/v1/containers.js';
import { ContainerState, type Container } from '../../proto/gen/berth/v1/types.js';
import type { AgentClient } from '../agents/index.js';
import { serverStream, unary } from './call.js';
import { mergedContainers, resolveContainer, type ContainerServiceDeps } from './containers.js';
import { checkName, MAX_NAMES_PER_REQUEST } from './validate.js';

type VerbMethods = 'start' | 'restart' | 'kill' | 'wait' | 'rename' | 'inspect' | 'top' | 'update' | 'stats' | 'copyFrom' | 'copyTo';

const MAX_GRACE_SECONDS = 3600;
/** Time between stats samples, ms. */
export const STATS_INTERVAL_MS = 1000;

/** Checks a signal name ("KILL", "SIGHUP") or number (1..64); returns its canonical spelling ("SIGKILL", "15"), "" as SIGKILL. */
export function checkSignal(raw: string, field = 'signal'): string {
  if (raw.trim() === '') return 'SIGKILL';
  const parsed = parseSignal(raw);
  if ('problem' in parsed) throw new InvalidArgumentError(`${field}: ${parsed.problem}`, { field });
  return parsed.spec;
}

function checkRefs(refs: readonly string[], field = 'containers'): void {
  if (refs.length === 0) throw new InvalidArgumentError(`${field}: expected at least one container name or id, got none`, { field });
  if (refs.length > MAX_NAMES_PER_REQUEST) {
    throw new InvalidArgumentError(`${field}: expected at most ${MAX_NAMES_PER_REQUEST} names per request, got ${refs.length}`, { field });
  }
}

function checkLimit(field: string, v: number, min: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0 || (v > 0 && v < min)) {
    throw new InvalidArgumentError(`${field}: expected 0 (keep) or at least ${min} ${what}, got ${v}`, { field });
  }
}

export function containerVerbs(deps: ContainerServiceDeps): Pick<ContainerServiceServer, VerbMethods> {
  const { store, logger } = deps;

  const agentOf = async (c: Container, signal?: AbortSignal): Promise<AgentClient> => {
    if (c.node === '') throw new UnavailableError(`failed to reach container "${c.name}": it has no node yet`);
    const node = await store.getNode(c.node, signal ? { signal } : {});
    return deps.agents.agent(c.node, node.spec?.address ?? '');
  };

  const resolveAll = async (refs: readonly string[], signal: AbortSignal): Promise<Container[]> => {
    checkRefs(refs);
    const all = await mergedContainers(deps, signal);
    return refs.map((ref, i) => resolveContainer(all, ref, `containers[${i}]`));
  };

  const resolveOne = async (ref: string, signal: AbortSignal): Promise<Container> =>
    resolveContainer(await mergedContainers(deps, signal), ref, 'container');

  const startOne = async (c: Container, signal: AbortSignal): Promise<void> => {
    await (await agentOf(c, signal)).startContainer({ id: c.id }, { signal });
    logger.info('container started again', { containerId: c.id, name: c.name, node: c.node });
  };

  return {
    start: unary(logger, 'ContainerStart', async (req: StartContainersRequest, { signal }): Promise<StartContainersResponse> => {
      const targets = await resolveAll(req.containers, signal);
      const started: string[] = [];
      for (const c of targets) {
        await startOne(c, signal);
        started.push(c.name);
      }
      return { started };
    }),

    restart: unary(logger, 'ContainerRestart', async (req: RestartContainersRequest, { signal }): Promise<RestartContainersResponse> => {
      if (req.graceSeconds > MAX_GRACE_SECONDS) {
        throw new InvalidArgumentError(`grace_seconds: expected at most ${MAX_GRACE_SECONDS}, got ${req.graceSeconds}`, { field: 'grace_seconds' });
      }
      const targets = await resolveAll(req.containers, signal);
      const restarted: string[] = [];
      for (const c of targets) {
        const agent = await agentOf(c, signal);
        await agent.stopContainer({ id: c.id, graceSeconds: req.graceSeconds }, { signal });
        await agent.startContainer({ id: c.id }, { signal });
        logger.info('container restarted', { containerId: c.id, name: c.name, node: c.node });
        restarted.push(c.name);
      }
      return { restarted };
    }),

    kill: unary(logger, 'ContainerKill', async (req: KillContainersRequest, { signal }): Promise<KillContainersResponse> => {
      const sig = checkSignal(req.signal);
      const targets = await resolveAll(req.containers, signal);
      for (const c of targets) {
        if (c.status?.state !== ContainerState.CONTAINER_STATE_RUNNING) {
          throw new FailedPreconditionError(`failed to kill container "${c.name}": it is not running (${c.status?.reason || 'state ' + String(c.status?.state ?? 0)}); expected a running container`);
        }
      }
      const killed: string[] = [];
      for (const c of targets) {
        await (await agentOf(c, signal)).killContainer({ id: c.id, signal: sig }, { signal });
        logger.info('container signalled', { containerId: c.id, name: c.name, node: c.node, signal: sig });
        killed.push(c.name);
      }
      return { killed };
    }),

    wait: unary(logger, 'ContainerWait', async (req: WaitContainerRequest, { signal }): Promise<WaitResult> => {
      const c = await resolveOne(req.container, signal);
      const res = await (await agentOf(c, signal)).waitContainer({ id: c.id }, { signal });
      return { ...res, name: c.name };
    }),

    rename: unary(logger, 'ContainerRename', async (req: RenameContainerRequest, { signal }): Promise<Container> => {
      const name = checkName('new_name', req.newName, 'container');
      const all = await mergedContainers(deps, signal);
      const c = resolveContainer(all, req.container, 'container');
      if (c.name === name) return c;
      const holder = all.find((x) => x.name === name);
      if (holder) {
        throw new AlreadyExistsError('container', name, { message: `failed to rename container "${c.name}" to "${name}": the name is already used by container ${holder.id.slice(0, 12)}; expected an unused name` });
      }
      let record: Container | undefined;
      try {
        record = await store.getContainerRecord(c.id, { signal });
      } catch (err) {
        if (!isCode(err, 'not_found')) throw err;
      }
      if (record) await store.writeContainerRecords({ put: [{ ...record, name, updatedUnixMs: Date.now() }] }, { signal });
      try {
        const renamed = await (await agentOf(c, signal)).renameContainer({ id: c.id, name }, { signal });
        logger.info('container renamed', { containerId: c.id, name, previous: c.name, node: c.node });
        return { ...c, name, spec: renamed.spec ?? c.spec };
      } catch (err) {
        // Nothing half-applied: the record gets its old name back.
        if (record) await store.writeContainerRecords({ put: [record] }).catch((e: unknown) => logger.warn('failed to restore a container record after a failed rename', { containerId: c.id, error: messageOf(e) }));
        throw err;
      }
    }),

    inspect: unary(logger, 'ContainerInspect', async (req: InspectContainersRequest, { signal }): Promise<InspectContainersResponse> => {
      const targets = await resolveAll(req.containers, signal);
      const containers = await Promise.all(targets.map(async (c): Promise<ContainerDetails> => {
        const r = c.spec?.resources;
        const fallback: ContainerDetails = {
          container: c, logPath: '', rootfs: '', bundle: '', runtimeId: '',
          limits: { cpuMillis: r?.cpuMillis ?? 0, memoryBytes: r?.memoryBytes ?? 0, pids: r?.pids ?? 0 },
        };
        try {
          const d = await (await agentOf(c, signal)).inspectContainer({ id: c.id }, { signal });
          return { ...d, container: { ...c, spec: d.container?.spec ?? c.spec } };
        } catch (err) {
          logger.debug('failed to ask the node for container details', { containerId: c.id, node: c.node, error: messageOf(err) });
          return fallback;
        }
      }));
      return { containers };
    }),

    top: unary(logger, 'ContainerTop', async (req: TopContainerRequest, { signal }): Promise<ContainerProcesses> => {
      const c = await resolveOne(req.container, signal);
      return (await agentOf(c, signal)).topContainer({ id: c.id }, { signal });
    }),

    update: unary(logger, 'ContainerUpdate', async (req: UpdateContainersRequest, { signal }): Promise<UpdateContainersResponse> => {
      const r = req.resources ?? { cpuMillis: 0, memoryBytes: 0, pids: 0 };
      checkLimit('resources.memory_bytes', r.memoryBytes, 4 * 1024 * 1024, 'bytes (4 MiB)');
      checkLimit('resources.cpu_millis', r.cpuMillis, 10, 'thousandths of a CPU');
      checkLimit('resources.pids', r.pids, 1, 'processes');
      if (r.memoryBytes === 0 && r.cpuMillis === 0 && r.pids === 0) {
        throw new InvalidArgumentError('resources: expected at least one limit to change (memory_bytes, cpu_millis or pids), got none', { field: 'resources' });
      }
      const targets = await resolveAll(req.containers, signal);
      const updated: string[] = [];
      for (const c of targets) {
        const after = await (await agentOf(c, signal)).updateContainer({ id: c.id, resources: r }, { signal });
        try {
          const record = await store.getContainerRecord(c.id, { signal });
          if (record.spec && after.spec?.resources) {
            await store.writeContainerRecords({ put: [{ ...record, spec: { ...record.spec, resources: after.spec.resources }, updatedUnixMs: Date.now() }] }, { signal });
          }
        } catch (err) {
          if (!isCode(err, 'not_found')) throw err;
        }
        logger.info('container limits updated', { containerId: c.id, name: c.name, node: c.node });
        updated.push(c.name);
      }
      return { updated };
    }),

    stats: serverStream(logger, 'ContainerStats', deps.stopping, async (req: ContainerStatsRequest, send: (r: ContainerStatsResponse) => void, { signal }) => {
      if (req.containers.length > MAX_NAMES_PER_REQUEST) {
        throw new InvalidArgumentError(`containers: expected at most ${MAX_NAMES_PER_REQUEST} names per request, got ${req.containers.length}`, { field: 'containers' });
      }
      const named = req.containers.length > 0;
      let fixed: Container[] | undefined = named ? await resolveAll(req.containers, signal) : undefined;
      const previous = new Map<string, ContainerStats>();
      const sample = async (): Promise<ContainerStatsResponse> => {
        const all = await mergedContainers(deps, signal);
        const targets = fixed
          ? fixed.map((f) => all.find((c) => c.id === f.id) ?? f)
          : all.filter((c) => req.all || c.status?.state === ContainerState.CONTAINER_STATE_RUNNING);
        const byNode = new Map<string, Container[]>();
        for (const c of targets) byNode.set(c.node, [...(byNode.get(c.node) ?? []), c]);
        const unreachable: string[] = [];
        const stats: ContainerStats[] = [];
        await Promise.all([...byNode].map(async ([node, cs]) => {
          try {
            const got = await (await agentOf(cs[0] as Container, signal)).containerStats(cs.map((c) => c.id), { signal });
            for (const s of got) {
              const c = cs.find((x) => x.id === s.id);
              const before = previous.get(s.id);
              const cpuPercent = before && s.readUnixMs > before.readUnixMs && s.cpuUsageNs >= before.cpuUsageNs
                ? ((s.cpuUsageNs - before.cpuUsageNs) / ((s.readUnixMs - before.readUnixMs) * 1e6)) * 100 : 0;
              previous.set(s.id, s);
              stats.push({ ...s, name: c?.name ?? s.name, node, cpuPercent });
            }
          } catch (err) {
            if (signal.aborted) return;
            unreachable.push(`${node || '(no node)'}: ${messageOf(err)}`);
            for (const c of cs) {
              stats.push({ id: c.id, name: c.name, node, cpuUsageNs: 0, readUnixMs: Date.now(), cpuPercent: 0, memoryUsageBytes: 0, memoryLimitBytes: 0, pids: 0, pidsLimit: 0, state: 'unknown' });
            }
          }
        }));
        const order = new Map(targets.map((c, i) => [c.id, i]));
        stats.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0));
        return { stats, unreachable };
      };
      // CPU % needs two samples: the first is taken and held back.
      await sample();
      for (;;) {
        await pause(STATS_INTERVAL_MS, signal);
        if (signal.aborted) return;
        send(await sample());
        if (!req.stream) return;
        // Containers named by the request stay; without names, new ones join.
        if (!named) fixed = undefined;
      }
    }),

    copyFrom: (call: ServerWritableStream<CopyFromContainerRequest, TarChunk>): void => {
      // Not through serverStream: a large copy must wait for the client to drain before asking the agent for more.
      const ac = new AbortController();
      const onStop = (): void => ac.abort();
      deps.stopping.addEventListener('abort', onStop, { once: true });
      call.on('cancelled', () => ac.abort());
      void (async () => {
        const req = call.request;
        if (!req.path.startsWith('/')) throw new InvalidArgumentError(`path: expected an absolute path inside the container, got "${req.path.slice(0, 200)}"`, { field: 'path' });
        const c = await resolveOne(req.container, ac.signal);
        for await (const chunk of (await agentOf(c, ac.signal)).copyFromContainer({ id: c.id, path: req.path }, { signal: ac.signal })) {
          if (ac.signal.aborted) return;
          if (!call.write(chunk)) await once(call, 'drain', { signal: ac.signal });
        }
        logger.info('copied from container', { containerId: c.id, name: c.name, path: req.path });
      })().then(() => {
        deps.stopping.removeEventListener('abort', onStop);
        if (!call.cancelled) call.end();
      }, (err: unknown) => {
        deps.stopping.removeEventListener('abort', onStop);
        if (call.cancelled) return;
        const s = toGrpcStatus(err);
        if (s.code === 13) logger.error('request failed', { method: 'ContainerCopyFrom', error: messageOf(err) });
        call.emit('error', Object.assign(new Error(s.details), { code: s.code, details: s.details }));
      });
    },

    copyTo: (call: ServerReadableStream<CopyToContainerRequest, CopyToContainerResponse>, callback: sendUnaryData<CopyToContainerResponse>): void => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const it = (call as AsyncIterable<CopyToContainerRequest>)[Symbol.asyncIterator]();
      void (async () => {
        const first = await it.next();
        const head = first.done ? undefined : first.value.part;
        if (head?.$case !== 'header') throw new InvalidArgumentError('header: expected the container and path first, got data or nothing', { field: 'header' });
        const path = head.value.path;
        if (!path.startsWith('/')) throw new InvalidArgumentError(`path: expected an absolute path inside the container, got "${path.slice(0, 200)}"`, { field: 'path' });
        const c = await resolveOne(head.value.container, ac.signal);
        async function* data(): AsyncIterable<Buffer> {
          for (;;) {
            const n = await it.next();
            if (n.done) return;
            if (n.value.part?.$case === 'data') yield Buffer.from(n.value.part.value);
            else throw new InvalidArgumentError('header: expected one header, got a second one', { field: 'header' });
          }
        }
        const res = await (await agentOf(c, ac.signal)).copyToContainer({ container: c.id, path }, data(), { signal: ac.signal });
        logger.info('copied into container', { containerId: c.id, name: c.name, path, entries: res.entries });
        return res;
      })().then((res) => callback(null, res), (err: unknown) => {
        const s = toGrpcStatus(err);
        if (s.code === 13) logger.error('request failed', { method: 'ContainerCopyTo', error: messageOf(err) });
        callback({ code: s.code, details: s.details });
      });
    },
  };
}
