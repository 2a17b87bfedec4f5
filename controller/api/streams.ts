/**
 * StreamService (proto/berth/v1/streams.proto): attach and exec streams from
 * the CLI, relayed to the agent of the container's node.
 *
 * The controller reads the first message (the start), finds the container by
 * name or unambiguous id prefix (as ContainerService does), and opens the same
 * stream on the container's agent with the container's full id. After that it
 * relays in both directions without looking inside: input to the agent,
 * output (ready, stdout, stderr, exit) to the client, the agent's status
 * (with its message) as the call's status. A client that goes away cancels
 * the agent's stream; an agent that cannot be reached ends the call with
 * UNAVAILABLE naming the node.
 *
 * An attach with `remove` (berth run --rm, attached) is for one-off
 * containers only: the agent removes the container once it exited, and when
 * its `exit` says `removed`, the controller deletes the container's record
 * (and forgets what the node reported of it) before passing `exit` on, so a
 * client that then lists containers no longer sees it. When that delete
 * fails, `exit` goes on with `removed` false (the client removes it then).
 */
import type * as grpc from '@grpc/grpc-js';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError, messageOf, toGrpcStatus } from '../../lib/index.js';
import type { StreamInput, StreamOutput, StreamServiceServer } from '../../proto/gen/berth/v1/streams.js';
import { ContainerState, type Container } from '../../proto/gen/berth/v1/types.js';
import type { AgentStream, AgentStreamDialer, AgentStreamMethod } from '../agents/index.js';
import { findContainer, runOneOff, type ContainerServiceDeps } from './containers.js';
import type { PullWatchers } from '../nodes/index.js';

export interface StreamServiceDeps extends ContainerServiceDeps {
  streams: AgentStreamDialer;
  /** Pull progress from agents, for `run` starts (none relayed without it). */
  pulls?: PullWatchers;
}

type Call = grpc.ServerDuplexStream<StreamInput, StreamOutput>;

const GONE = new Set([ContainerState.CONTAINER_STATE_REMOVED]);

export function streamService(deps: StreamServiceDeps): StreamServiceServer {
  const log = deps.logger.child({ component: 'streams' });

  const relay = (method: AgentStreamMethod) => (call: Call): void => {
    let agent: AgentStream | undefined;
    let finished = false;
    const queued: StreamInput[] = [];
    let clientEnded = false;
    let first = true;

    const fail = (err: unknown): void => {
      if (finished) return;
      finished = true;
      agent?.cancel();
      if (call.cancelled) return;
      const s = toGrpcStatus(err);
      if (s.code === 13) log.error('stream failed', { method, reason: messageOf(err) });
      call.emit('error', { code: s.code, details: s.details });
    };
    const onStop = (): void => {
      fail(new UnavailableError('the controller is stopping'));
      dropUnattached();
    };
    deps.stopping.addEventListener('abort', onStop, { once: true });
    const cleanup = (): void => {
      deps.stopping.removeEventListener('abort', onStop);
      agent?.cancel();
    };
    call.on('cancelled', () => {
      finished = true;
      cleanup();
      dropUnattached();
    });
    call.on('error', () => cleanup());

    /** Removes a container a run start created that never got attached (the client went away, or the attach failed). */
    const removeCreated = async (c: Container, address: string): Promise<void> => {
      await deps.agents.agent(c.node, address).removeContainer({ id: c.id, force: true }).catch(() => undefined);
      await deps.store.writeContainerRecords({ delete: [c.id] })
        .then(() => deps.observed.forget(c.node, c.id))
        .catch((err: unknown) => log.warn('failed to delete the record of a container whose attach failed', { containerId: c.id, error: messageOf(err) }));
    };
    let createdUnattached: { container: Container; address: string } | undefined;
    const dropUnattached = (): void => {
      const c = createdUnattached;
      createdUnattached = undefined;
      if (c) void removeCreated(c.container, c.address);
    };

    const open = async (m: StreamInput): Promise<void> => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      let input = m.input;
      // A run start: create the container (relaying the progress of a pull it needs), then attach with start.
      let created: { container: Container; address: string } | undefined;
      if (input?.$case === 'run' && method === 'attach') {
        const r = input.value;
        created = await runOneOff(deps, {
          name: r.name, spec: r.spec, node: r.node, nodeSelector: r.nodeSelector, waitForAttach: true, ...(r.size ? { consoleSize: r.size } : {}),
        }, ac.signal, {
          onPlaced: (node, image) => deps.pulls?.watch(node, image, (p) => {
            if (!finished) call.write({ output: { $case: 'pull', value: p } });
          }),
        });
        createdUnattached = created;
        if (finished) {
          dropUnattached();
          return;
        }
        input = { $case: 'attach', value: { container: created.container.id, stdin: r.stdin, start: true, ...(r.size ? { size: r.size } : {}), ...(r.remove ? { remove: true } : {}) } };
      }
      const start = input?.$case === 'attach' && method === 'attach'
        ? { container: input.value.container, withId: (id: string): StreamInput => ({ input: { $case: 'attach', value: { ...input.value, container: id } } }) }
        : input?.$case === 'exec' && method === 'exec'
          ? { container: input.value.container, withId: (id: string): StreamInput => ({ input: { $case: 'exec', value: { ...input.value, container: id } } }) }
          : undefined;
      if (!start) {
        throw new InvalidArgumentError(`${method}: expected the first message to be ${method === 'attach' ? 'an attach or run' : 'an exec'} start, got ${m.input?.$case ?? 'nothing'}`, { field: method });
      }
      const c = created?.container ?? await findContainer(deps, start.container, `${method}.container`, ac.signal);
      if (GONE.has(c.status?.state ?? ContainerState.CONTAINER_STATE_UNSPECIFIED)) {
        throw new FailedPreconditionError(`failed to ${method} ${method === 'attach' ? 'to' : 'in'} container "${c.name}": it is being removed`);
      }
      const remove = input?.$case === 'attach' && input.value.remove === true;
      if (remove && c.workload !== '') {
        throw new FailedPreconditionError(`failed to attach to container "${c.name}" with remove: it is a replica of workload "${c.workload}"; expected a one-off container (berth run)`);
      }
      const address = created ? created.address : (await deps.store.getNode(c.node, { signal: ac.signal })).spec?.address ?? '';
      if (finished) {
        dropUnattached();
        return;
      }
      const s = deps.streams.open(c.node, address, method);
      agent = s;
      // Output in order; an exit after a removal waits for the record's delete.
      let sending = Promise.resolve();
      const forget = async (out: StreamOutput): Promise<StreamOutput> => {
        const o = out.output;
        if (!remove || o?.$case !== 'exit' || o.value.removed !== true) return out;
        try {
          await deps.store.writeContainerRecords({ delete: [c.id] });
          deps.observed.forget(c.node, c.id);
          log.info('container removed after its attached run', { containerId: c.id, name: c.name, node: c.node });
          return out;
        } catch (err) {
          log.warn('failed to delete the record of a container removed after its attached run', { containerId: c.id, error: messageOf(err) });
          return { output: { $case: 'exit', value: { ...o.value, removed: false } } };
        }
      };
      s.on('data', (out: StreamOutput) => {
        if (out.output?.$case === 'ready') createdUnattached = undefined;
        sending = sending.then(async () => {
          const o = await forget(out);
          if (!finished) call.write(o);
        }).catch(fail);
      });
      s.on('end', () => {
        void sending.then(() => {
          if (finished) return;
          finished = true;
          deps.stopping.removeEventListener('abort', onStop);
          call.end();
        });
      });
      s.on('error', (err: grpc.ServiceError) => {
        dropUnattached();
        if (finished) return;
        finished = true;
        deps.stopping.removeEventListener('abort', onStop);
        if (call.cancelled) return;
        const details = err.code === 14 ? `failed to reach the agent of node "${c.node}": ${err.details}` : err.details;
        call.emit('error', { code: err.code, details });
      });
      s.write(start.withId(c.id));
      for (const q of queued.splice(0)) s.write(q);
      if (clientEnded) s.end();
    };

    call.on('data', (m: StreamInput) => {
      if (finished) return;
      if (first) {
        first = false;
        open(m).catch((err: unknown) => {
          fail(err);
          dropUnattached();
        });
        return;
      }
      if (agent) agent.write(m);
      else queued.push(m);
    });
    call.on('end', () => {
      clientEnded = true;
      if (first) fail(new InvalidArgumentError(`${method}: expected a start message, got none`, { field: method }));
      else agent?.end();
    });
  };

  return { attach: relay('attach'), exec: relay('exec') };
}
