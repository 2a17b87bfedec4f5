/**
 * AgentStreamService handlers (proto/berth/v1/streams.proto): attach to a
 * container's terminal and exec a process in a running container, as
 * bidirectional streams the controller relays from the CLI.
 *
 * A stream's first message names the container (its full id on this node)
 * and what to do; everything after it is input (stdin bytes, end of input,
 * terminal resizes). The answer is `ready`, then output, then `exit`.
 * Anything wrong before `ready` ends the call with a status whose message
 * names the thing at fault; input from the wire is treated as hostile
 * (sizes, lengths and every field are checked).
 *
 * Attach to a terminal container connects to its shim's attach socket
 * (agent/runtime); with `start`, a container created with wait_for_attach is
 * started only once that socket is connected, so none of its output is
 * missed. Attach to a container without a terminal follows its output (from
 * now, or from the start when it starts it) until it exits, and feeds its
 * stdin socket when it has one (berth run -i). Either way `exit` carries the
 * container's exit code. With `remove` (berth run --rm, attached) the
 * container is removed once it has exited and before `exit` is sent, which
 * then says whether that worked (`removed`); a client that leaves first
 * leaves the container as it is.
 */
import type { Socket } from 'node:net';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { status as GrpcCode } from '@grpc/grpc-js';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError, messageOf, toGrpcStatus, type Logger } from '../../lib/index.js';
import type { AgentStreamServiceServer } from '../../proto/gen/berth/v1/streams.js';
import type { AttachStart, ExecStart, StreamInput, StreamOutput, TerminalSize } from '../../proto/gen/berth/v1/streams.js';
import { ContainerState, type Container } from '../../proto/gen/berth/v1/types.js';
import { containerIdProblem, type ContainerManager } from '../containers/index.js';
import type { ContainerRuntime, ExitInfo, LogEntry } from '../runtime/index.js';

export interface AgentStreamDeps {
  containers: Pick<ContainerManager, 'get' | 'attempts' | 'startWaiting' | 'remove'>;
  runtime: Pick<ContainerRuntime, 'attach' | 'attachStdin' | 'resize' | 'exec' | 'wait' | 'state' | 'logs'>;
  logger: Logger;
}

type Call = ServerDuplexStream<StreamInput, StreamOutput>;

/** Most bytes of one stdin message. */
const MAX_INPUT_BYTES = 1 << 20;
const MAX_ARGS = 256;
const MAX_ARG_CHARS = 4096;
const ENV_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*=/;

function stateName(c: Container): string {
  const s = c.status?.state ?? ContainerState.CONTAINER_STATE_UNSPECIFIED;
  switch (s) {
    case ContainerState.CONTAINER_STATE_PENDING: return 'pending';
    case ContainerState.CONTAINER_STATE_CREATED: return 'created';
    case ContainerState.CONTAINER_STATE_RUNNING: return 'running';
    case ContainerState.CONTAINER_STATE_EXITED: return 'exited';
    case ContainerState.CONTAINER_STATE_REMOVED: return 'removed';
    default: return 'in an unknown state';
  }
}

function label(c: Container): string {
  return c.name !== '' ? c.name : c.id;
}

export function checkTerminalSize(size: TerminalSize | undefined, field: string): { rows: number; cols: number } | undefined {
  if (!size || (size.rows === 0 && size.cols === 0)) return undefined;
  for (const [name, v] of [['rows', size.rows], ['cols', size.cols]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 65535) throw new InvalidArgumentError(`${field}.${name}: expected 1..65535, got ${v}`, { field: `${field}.${name}` });
  }
  return { rows: size.rows, cols: size.cols };
}

/** Checks an exec start from the wire; returns the runtime's options. */
export function checkExecStart(s: ExecStart): { args: string[]; env: string[]; cwd?: string; user?: string; tty: boolean; stdin: boolean; size?: { rows: number; cols: number } } {
  if (s.command.length === 0 || s.command[0] === '') throw new InvalidArgumentError('exec.command: expected a program to run, got nothing', { field: 'exec.command' });
  if (s.command.length > MAX_ARGS) throw new InvalidArgumentError(`exec.command: expected at most ${MAX_ARGS} arguments, got ${s.command.length}`, { field: 'exec.command' });
  s.command.forEach((a, i) => {
    if (a.length > MAX_ARG_CHARS || a.includes('\0')) throw new InvalidArgumentError(`exec.command[${i}]: expected at most ${MAX_ARG_CHARS} characters without NUL`, { field: `exec.command[${i}]` });
  });
  if (s.env.length > MAX_ARGS) throw new InvalidArgumentError(`exec.env: expected at most ${MAX_ARGS} variables, got ${s.env.length}`, { field: 'exec.env' });
  s.env.forEach((e, i) => {
    if (!ENV_ENTRY.test(e) || e.length > 32768 || e.includes('\0')) {
      throw new InvalidArgumentError(`exec.env[${i}]: expected KEY=value with KEY made of letters, digits and "_", got ${JSON.stringify(e.slice(0, 64))}`, { field: `exec.env[${i}]` });
    }
  });
  if (s.workingDir !== '' && (!s.workingDir.startsWith('/') || s.workingDir.length > 4096 || s.workingDir.includes('\0'))) {
    throw new InvalidArgumentError(`exec.working_dir: expected an absolute path inside the container, got ${JSON.stringify(s.workingDir.slice(0, 64))}`, { field: 'exec.working_dir' });
  }
  if (s.user.length > 256 || s.user.includes('\0')) throw new InvalidArgumentError('exec.user: expected a user name or uid[:gid] of at most 256 characters', { field: 'exec.user' });
  const size = checkTerminalSize(s.size, 'exec.size');
  return {
    args: [...s.command], env: [...s.env], tty: s.tty, stdin: s.stdin,
    ...(s.workingDir !== '' ? { cwd: s.workingDir } : {}), ...(s.user !== '' ? { user: s.user } : {}), ...(size ? { size } : {}),
  };
}

/**
 * The plumbing of one duplex call: the first message (awaited), later input
 * to a handler, output with `send`, and one ending (exit or a status).
 */
class Session {
  private readonly ac = new AbortController();
  private done = false;
  private first?: (m: StreamInput | undefined) => void;
  private onInput?: (m: StreamInput) => void;
  private onInputEnd?: () => void;
  private readonly queued: StreamInput[] = [];
  private inputEnded = false;

  constructor(private readonly call: Call, private readonly log: Logger, private readonly method: string) {
    call.on('data', (m: StreamInput) => {
      if (this.first) {
        const f = this.first;
        this.first = undefined;
        f(m);
      } else if (this.onInput) this.onInput(m);
      else this.queued.push(m);
    });
    call.on('end', () => {
      this.inputEnded = true;
      if (this.first) {
        const f = this.first;
        this.first = undefined;
        f(undefined);
      }
      this.onInputEnd?.();
    });
    call.on('cancelled', () => this.ac.abort());
    call.on('close', () => this.ac.abort());
    call.on('error', () => this.ac.abort());
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  /** The first message, or undefined when the client sent none. */
  start(): Promise<StreamInput | undefined> {
    return new Promise((resolve) => {
      this.first = resolve;
    });
  }

  /** Everything after the first message. */
  input(onInput: (m: StreamInput) => void, onEnd: () => void): void {
    this.onInput = onInput;
    this.onInputEnd = onEnd;
    for (const m of this.queued.splice(0)) onInput(m);
    if (this.inputEnded) onEnd();
  }

  send(out: StreamOutput): void {
    if (!this.done && !this.ac.signal.aborted) this.call.write(out);
  }

  finish(exit: ExitInfo | { exitCode: number; reason?: string; error?: string }, removed?: boolean): void {
    if (this.done) return;
    this.send({ output: { $case: 'exit', value: { exitCode: exit.exitCode, reason: exit.reason ?? '', message: exit.error ?? '', ...(removed !== undefined ? { removed } : {}) } } });
    this.done = true;
    this.ac.abort();
    if (!this.call.cancelled) this.call.end();
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.ac.abort();
    if (this.call.cancelled) return;
    const s = toGrpcStatus(err);
    if (s.code === GrpcCode.INTERNAL || s.code === GrpcCode.UNKNOWN) this.log.error('stream failed', { method: this.method, reason: messageOf(err) });
    this.call.emit('error', { code: s.code, details: s.details });
  }
}

function stdinBytes(m: StreamInput): Buffer | undefined {
  if (m.input?.$case !== 'stdin') return undefined;
  if (m.input.value.length > MAX_INPUT_BYTES) throw new InvalidArgumentError(`stdin: expected at most ${MAX_INPUT_BYTES} bytes per message, got ${m.input.value.length}`, { field: 'stdin' });
  return m.input.value;
}

export function agentStreamHandlers(deps: AgentStreamDeps): AgentStreamServiceServer {
  const log = deps.logger.child({ component: 'streams' });

  /**
   * Sends a container's log entries (from `since`, else all) until it exits.
   * The log follow looks for the exit only every 100 ms; the runtime's wait
   * (a watch on its state) sees it at once, which stops the follow, and a
   * last read sends whatever the follow had not sent yet. So a quick command
   * ends its attach without waiting for the follow's next look.
   */
  async function relayLogs(s: Session, rid: string, since: Date | undefined): Promise<void> {
    const follow = new AbortController();
    const stop = (): void => follow.abort();
    s.signal.addEventListener('abort', stop, { once: true });
    let last: LogEntry | undefined;
    const send = (e: LogEntry): void => {
      const data = Buffer.from(e.partial ? e.text : `${e.text}\n`);
      s.send({ output: e.stream === 'stderr' ? { $case: 'stderr', value: data } : { $case: 'stdout', value: data } });
      last = e;
    };
    let exitSeen = false;
    const watching = deps.runtime.wait(rid, { signal: follow.signal }).then(() => {
      exitSeen = true;
      follow.abort();
    }, () => undefined);
    try {
      for await (const e of deps.runtime.logs(rid, { ...(since ? { since } : {}), follow: true, signal: follow.signal })) send(e);
      if (!exitSeen || s.signal.aborted) return;
      // The rest: entries after the last one sent (read again from its time; the log only grows).
      const after = last ? new Date(Date.parse(last.time)) : since;
      const rest: LogEntry[] = [];
      for await (const e of deps.runtime.logs(rid, { ...(after ? { since: after } : {}), signal: s.signal })) rest.push(e);
      let from = 0;
      if (last) {
        const seen = last;
        const i = rest.findLastIndex((e) => e.time === seen.time && e.stream === seen.stream && e.text === seen.text && e.partial === seen.partial);
        from = i >= 0 ? i + 1 : rest.findIndex((e) => e.time > seen.time);
        if (from < 0) from = rest.length;
      }
      for (const e of rest.slice(from)) send(e);
    } finally {
      follow.abort();
      s.signal.removeEventListener('abort', stop);
      await watching;
    }
  }

  const lookup = (id: string, field: string): Container => {
    const p = containerIdProblem(id);
    if (p) throw new InvalidArgumentError(`${field}: ${p}`, { field });
    return deps.containers.get(id);
  };

  async function attach(s: Session): Promise<void> {
    const first = await s.start();
    if (first?.input?.$case !== 'attach') {
      throw new InvalidArgumentError(`attach: expected the first message to be an attach start, got ${first?.input?.$case ?? 'nothing'}`, { field: 'attach' });
    }
    const start: AttachStart = first.input.value;
    const c = lookup(start.container, 'attach.container');
    const size = checkTerminalSize(start.size, 'attach.size');
    const state = c.status?.state;
    if (state !== ContainerState.CONTAINER_STATE_RUNNING && state !== ContainerState.CONTAINER_STATE_CREATED) {
      throw new FailedPreconditionError(`failed to attach to container "${label(c)}": it is ${stateName(c)}; expected a running container`);
    }
    const rid = deps.containers.attempts(c.id).current;
    // berth run --rm (attached): removed here once it exited, before `exit` goes out (no second call).
    const finish = async (exit: ExitInfo): Promise<void> => {
      if (!start.remove) return s.finish(exit);
      if (s.signal.aborted) return;
      let removed = true;
      try {
        await deps.containers.remove(c.id, { force: true });
      } catch (err) {
        removed = false;
        log.warn('failed to remove a container after its attached run', { containerId: c.id, reason: messageOf(err) });
      }
      s.finish(exit, removed);
    };
    const ready: StreamOutput = { output: { $case: 'ready', value: { containerId: c.id, containerName: c.name, node: c.node, tty: c.spec?.tty === true } } };
    if (!c.spec?.tty) {
      // No terminal: its input through the shim's stdin socket (berth run -i), and its output from
      // the log: all of it when this attach starts it, else from now on, until it exits.
      let input: Socket | undefined;
      if (start.stdin && c.spec?.stdin) {
        if (!deps.runtime.attachStdin) throw new FailedPreconditionError(`failed to attach to the input of container "${label(c)}": this agent cannot`);
        const sock = await deps.runtime.attachStdin(rid);
        input = sock;
        sock.on('error', () => undefined);
        s.signal.addEventListener('abort', () => sock.destroy(), { once: true });
      }
      const starting = state === ContainerState.CONTAINER_STATE_CREATED && start.start;
      const since = starting ? undefined : new Date();
      s.send(ready);
      s.input((m) => {
        try {
          const data = stdinBytes(m);
          if (data && input && !input.destroyed) input.write(data);
          if (m.input?.$case === 'closeStdin' && m.input.value) input?.end();
        } catch (err) {
          s.fail(err);
        }
      }, () => input?.end());
      if (starting) await deps.containers.startWaiting(c.id);
      await relayLogs(s, rid, since);
      if (s.signal.aborted) return;
      await finish(await deps.runtime.wait(rid, { signal: s.signal }));
      return;
    }
    const sock = await deps.runtime.attach(rid);
    s.signal.addEventListener('abort', () => sock.destroy(), { once: true });
    const closed = new Promise<void>((resolve) => {
      sock.on('close', () => resolve());
      sock.on('error', () => undefined);
    });
    sock.on('data', (d: Buffer) => s.send({ output: { $case: 'stdout', value: d } }));
    if (size) await deps.runtime.resize(rid, size.rows, size.cols).catch((e: unknown) => log.debug('resize failed', { containerId: c.id, reason: messageOf(e) }));
    s.send(ready);
    if (start.start) await deps.containers.startWaiting(c.id);
    s.input((m) => {
      try {
        const data = stdinBytes(m);
        if (data && start.stdin && !sock.destroyed) sock.write(data);
        if (m.input?.$case === 'resize') {
          const r = checkTerminalSize(m.input.value, 'resize');
          if (r) void deps.runtime.resize(rid, r.rows, r.cols).catch((e: unknown) => log.debug('resize failed', { containerId: c.id, reason: messageOf(e) }));
        }
      } catch (err) {
        s.fail(err);
      }
    }, () => undefined);
    await closed;
    if (s.signal.aborted) return;
    // The shim closes attach sockets when the container exits (or drops a client that cannot keep up).
    let exit: ExitInfo;
    try {
      exit = await deps.runtime.wait(rid, { signal: s.signal, timeoutMs: 5000 });
    } catch (err) {
      if (s.signal.aborted) return;
      throw new UnavailableError(`failed to stay attached to container "${label(c)}": its terminal connection closed while it runs (${messageOf(err)}); attach again`, { cause: err });
    }
    await finish(exit);
  }

  async function exec(s: Session): Promise<void> {
    const first = await s.start();
    if (first?.input?.$case !== 'exec') {
      throw new InvalidArgumentError(`exec: expected the first message to be an exec start, got ${first?.input?.$case ?? 'nothing'}`, { field: 'exec' });
    }
    const start = first.input.value;
    const c = lookup(start.container, 'exec.container');
    const o = checkExecStart(start);
    if (c.status?.state !== ContainerState.CONTAINER_STATE_RUNNING) {
      throw new FailedPreconditionError(`failed to exec in container "${label(c)}": it is ${stateName(c)}; expected a running container`);
    }
    const rid = deps.containers.attempts(c.id).current;
    let readyFor: NodeJS.WritableStream | undefined;
    const result = await deps.runtime.exec(rid, {
      args: o.args, env: o.env, tty: o.tty, signal: s.signal,
      ...(o.cwd ? { cwd: o.cwd } : {}), ...(o.user ? { user: o.user } : {}), ...(o.size ? { consoleSize: o.size } : {}),
      streams: (io) => {
        readyFor = io.stdin;
        s.send({ output: { $case: 'ready', value: { containerId: c.id, containerName: c.name, node: c.node, tty: o.tty } } });
        io.stdout.on('data', (d: Buffer) => s.send({ output: { $case: 'stdout', value: d } }));
        io.stderr.on('data', (d: Buffer) => s.send({ output: { $case: 'stderr', value: d } }));
        if (!o.stdin) io.stdin.end();
        s.input((m) => {
          try {
            const data = stdinBytes(m);
            if (data && o.stdin) io.stdin.write(data);
            if (m.input?.$case === 'closeStdin' && m.input.value) io.stdin.end();
            if (m.input?.$case === 'resize') {
              const r = checkTerminalSize(m.input.value, 'resize');
              if (r && o.tty) io.resize?.(r.rows, r.cols);
            }
          } catch (err) {
            s.fail(err);
          }
        }, () => io.stdin.end());
      },
    });
    if (s.signal.aborted) return;
    if (!readyFor) throw new FailedPreconditionError(`failed to exec in container "${label(c)}": the process did not start`);
    s.finish({ exitCode: result.exitCode });
  }

  const wrap = (method: string, fn: (s: Session) => Promise<void>) => (call: Call): void => {
    const s = new Session(call, log, method);
    fn(s).catch((err: unknown) => s.fail(err));
  };

  return {
    attach: wrap('Attach', attach),
    exec: wrap('Exec', exec),
  };
}
