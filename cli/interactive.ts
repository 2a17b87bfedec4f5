/**
 * Interactive streams: `berth exec`, `berth attach`, and the terminal part of
 * `berth run -it` (StreamService on the controller, proto/berth/v1/streams.proto).
 *
 * `relayStream` opens an Attach or Exec stream, sends the start message, and
 * then connects this terminal to it: output to stdout/stderr, input (when
 * asked) to the stream, and for a terminal stream the local terminal in raw
 * mode (restored at the end, whatever happens) with its window size sent on
 * every SIGWINCH. It resolves with the exit code from the stream's last
 * message. Ctrl-P Ctrl-Q (in raw mode) detaches and leaves the container
 * running, as Docker does.
 */
import type { Command } from 'commander';
import type { AttachStart, ExecStart, RunStart, StreamInput, StreamOutput, StreamReady, TerminalSize } from '../proto/gen/berth/v1/streams.js';
import type { PullProgress } from '../proto/gen/berth/v1/types.js';
import type { ProgressView } from './images.js';
import type { RunRequest } from '../proto/gen/berth/v1/controller.js';
import type { ControllerApi } from './client.js';
import { separateCommand } from './argv.js';
import { UsageError, type CliContext } from './context.js';
import type { Verb } from './verb.js';

/** Ctrl-P then Ctrl-Q. */
const DETACH = [0x10, 0x11] as const;

export type StreamStart = { $case: 'attach'; value: AttachStart } | { $case: 'exec'; value: ExecStart } | { $case: 'run'; value: RunStart };

export interface RelayOptions {
  /** Forward this program's stdin. */
  stdin: boolean;
  /** Called when the server says the stream is connected. */
  onReady?: (ready: StreamReady) => void;
  /** Progress of an image pull a run start needed (before ready). */
  onPull?: (progress: PullProgress) => void;
  /** Ctrl-C without a raw terminal: what to do (default: leave, exit code 130). */
  onInterrupt?: () => void;
}

/** The terminal's size, when stdout is one. */
export function terminalSize(ctx: CliContext): TerminalSize | undefined {
  const out = ctx.io.stdout as NodeJS.WriteStream;
  if (out.isTTY && out.rows > 0 && out.columns > 0) return { rows: out.rows, cols: out.columns };
  return undefined;
}

export interface RelayResult {
  /** The process's exit code; 0 when this program detached. */
  code: number;
  /** Ctrl-P Ctrl-Q (or Ctrl-C without onInterrupt) left the process running. */
  detached: boolean;
  /** The server removed the container after it exited (AttachStart.remove). */
  removed?: boolean;
}

/** Opens the stream, relays it, and resolves with the process's exit code. */
export async function relayStream(ctx: CliContext, start: StreamStart, opts: RelayOptions): Promise<RelayResult> {
  const grpc = await import('./rpc.js');
  const gen = await import('../proto/gen/berth/v1/streams.js');
  const { cliError } = await import('./client.js');
  const client = grpc.makeClient(gen.StreamServiceService, ctx.controller, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0 });
  const call = start.$case === 'exec' ? client.exec() : client.attach();
  const stdin = ctx.io.stdin as NodeJS.ReadStream;
  const stdout = ctx.io.stdout as NodeJS.WriteStream;
  let raw = false;
  let detached = false;
  const send = (m: StreamInput): void => {
    if (!ended) call.write(m);
  };
  let ended = false;
  let seen = 0; // bytes of DETACH matched so far
  const onInput = (chunk: Buffer | string): void => {
    let data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (raw) {
      // Detach keys: a match is held back until complete; a broken match is sent on.
      const out: number[] = [];
      for (const b of data) {
        if (b === DETACH[seen]) {
          seen++;
          if (seen === DETACH.length) {
            detached = true;
            call.cancel();
            return;
          }
          continue;
        }
        for (let i = 0; i < seen; i++) out.push(DETACH[i] as number);
        seen = 0;
        out.push(b);
      }
      data = Buffer.from(out);
      if (data.length === 0) return;
    }
    send({ input: { $case: 'stdin', value: data } });
  };
  const onInputEnd = (): void => {
    send({ input: { $case: 'closeStdin', value: true } });
    if (!ended) call.end();
  };
  const onResize = (): void => {
    const size = terminalSize(ctx);
    if (size) send({ input: { $case: 'resize', value: size } });
  };
  const onSigint = (): void => {
    if (opts.onInterrupt) opts.onInterrupt();
    else {
      detached = true;
      call.cancel();
    }
  };
  const restore = (): void => {
    ended = true;
    if (raw) {
      try {
        stdin.setRawMode(false);
      } catch {
        // the terminal is gone
      }
      raw = false;
    }
    stdin.removeListener('data', onInput);
    stdin.removeListener('end', onInputEnd);
    stdout.removeListener('resize', onResize);
    process.removeListener('SIGWINCH', onResize);
    process.removeListener('SIGINT', onSigint);
    if (opts.stdin) {
      stdin.pause();
      // Let the process end: a terminal (or pipe) stdin would keep it alive.
      if (stdin === process.stdin) process.stdin.destroy();
    }
    client.close();
  };

  return new Promise<RelayResult>((resolve, reject) => {
    let exitCode: number | undefined;
    let removed = false;
    process.on('SIGINT', onSigint);
    call.on('data', (m: StreamOutput) => {
      const o = m.output;
      if (!o) return;
      switch (o.$case) {
        case 'pull':
          opts.onPull?.(o.value);
          break;
        case 'ready': {
          opts.onReady?.(o.value);
          if (o.value.tty) {
            if (opts.stdin && stdin.isTTY && typeof stdin.setRawMode === 'function') {
              stdin.setRawMode(true);
              raw = true;
            }
            if (stdout.isTTY) {
              stdout.on('resize', onResize);
              process.on('SIGWINCH', onResize);
            }
          }
          if (opts.stdin) {
            stdin.on('data', onInput);
            stdin.on('end', onInputEnd);
            stdin.resume();
          }
          break;
        }
        case 'stdout':
          ctx.io.stdout.write(o.value);
          break;
        case 'stderr':
          ctx.io.stderr.write(o.value);
          break;
        case 'exit':
          exitCode = o.value.exitCode;
          removed = o.value.removed === true;
          break;
      }
    });
    call.on('error', (err: Error & { code?: number }) => {
      restore();
      if (detached) {
        if (start.$case !== 'exec') ctx.io.stderr.write(raw ? '\r\ndetached\r\n' : 'detached\n');
        resolve(exitCode !== undefined ? { code: exitCode, detached: false } : { code: start.$case === 'exec' ? 130 : 0, detached: true });
        return;
      }
      reject(cliError(err, ctx));
    });
    call.on('end', () => {
      restore();
      if (exitCode === undefined) reject(new Error(`the ${start.$case} stream ended without an exit status`));
      else resolve({ code: exitCode, detached: false, ...(removed ? { removed } : {}) });
    });
    call.write({ input: start });
  });
}

/**
 * `berth run` attached (with or without -t / -i): one stream does it all. Its
 * `run` start has the controller create the container (a missing image is
 * pulled first; its progress is shown on stderr, as `berth pull` shows it),
 * attach to it and start it, so nothing it prints is missed; the exit code is
 * the container's. With --rm the container is removed once it has exited,
 * before the stream ends; when the server could not remove it, this program
 * removes it. Ctrl-C without -i stops it (as `docker run` does); with -i it
 * goes to the container. A container that never got attached (this program
 * went away, the attach failed) is removed by the controller.
 */
export async function runWithTerminal(ctx: CliContext, api: ControllerApi, req: RunRequest, opts: { interactive: boolean; rm: boolean }): Promise<number> {
  const size = terminalSize(ctx);
  let ready: StreamReady | undefined;
  let stopping = false;
  let pulls: Promise<ProgressView> | undefined;
  const start: RunStart = {
    name: req.name, spec: req.spec, node: req.node, nodeSelector: req.nodeSelector, stdin: opts.interactive, remove: opts.rm, ...(size ? { size } : {}),
  };
  const result = await relayStream(ctx, { $case: 'run', value: start }, {
    stdin: opts.interactive,
    onPull: (p) => {
      if (!pulls) {
        ctx.io.stderr.write(`Unable to find image "${p.reference}" on node ${p.node}: pulling\n`);
        pulls = import('./images.js').then((m) => m.pullProgressView(ctx, { stream: 'stderr', multiNode: false }));
      }
      void pulls.then((v) => v.update(p));
    },
    onReady: (r) => {
      ready = r;
      void pulls?.then((v) => v.stop());
    },
    onInterrupt: () => {
      if (stopping || !ready) process.exit(130);
      stopping = true;
      const c = ready;
      ctx.io.stderr.write(`stopping container "${c.containerName}" (Ctrl-C again to leave it running)\n`);
      api.stopContainers({ containers: [c.containerId], graceSeconds: 0 }).catch((err: unknown) => {
        ctx.io.stderr.write(`error: failed to stop container "${c.containerName}": ${err instanceof Error ? err.message : String(err)}\n`);
      });
    },
  });
  if (result.detached) return 0;
  if (opts.rm && !result.removed && ready) await api.removeContainers({ containers: [ready.containerId], force: true });
  return result.code;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
const ENV = /^[A-Za-z_][A-Za-z0-9_]*(=|$)/;

export interface ExecOptions {
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  workdir?: string;
  user?: string;
}

/** Builds the exec start from the flags; UsageError names the flag at fault. */
export function buildExecStart(ctx: CliContext, opts: ExecOptions, container: string, command: readonly string[]): ExecStart {
  if (container.trim() === '') throw new UsageError('CONTAINER: expected a container name or id, got nothing');
  if (command.length === 0 || command[0] === '') throw new UsageError('COMMAND: expected a program to run in the container');
  const env: string[] = [];
  for (const e of opts.env ?? []) {
    if (!ENV.test(e)) throw new UsageError(`-e, --env: expected KEY=VALUE with KEY made of letters, digits and "_", got "${e}"`);
    if (e.includes('=')) env.push(e);
    else if (ctx.io.env[e] !== undefined) env.push(`${e}=${ctx.io.env[e]}`);
  }
  if (opts.workdir !== undefined && !opts.workdir.startsWith('/')) throw new UsageError(`-w, --workdir: expected an absolute path inside the container, got "${opts.workdir}"`);
  const size = opts.tty ? terminalSize(ctx) : undefined;
  return {
    container: container.trim(), command: [...command], env, workingDir: opts.workdir ?? '', user: opts.user ?? '',
    tty: Boolean(opts.tty), stdin: Boolean(opts.interactive), ...(size ? { size } : {}),
  };
}

/** Options of `berth exec` that take a value. */
const EXEC_VALUE_OPTIONS = new Set(['-e', '--env', '-w', '--workdir', '-u', '--user']);

/**
 * Docker's rule for `exec`: every word after CONTAINER belongs to the
 * command. Returns argv with "--" inserted after CONTAINER when the verb is
 * exec (and there is no "--" already).
 */
export function separateExecCommand(argv: readonly string[]): string[] {
  return separateCommand(argv, 'exec', EXEC_VALUE_OPTIONS);
}

export async function runExec(ctx: CliContext, opts: ExecOptions, container: string, command: readonly string[]): Promise<number> {
  const start = buildExecStart(ctx, opts, container, command);
  return (await relayStream(ctx, { $case: 'exec', value: start }, { stdin: Boolean(opts.interactive) })).code;
}

export async function runAttach(ctx: CliContext, opts: { stdin?: boolean }, container: string): Promise<number> {
  if (container.trim() === '') throw new UsageError('CONTAINER: expected a container name or id, got nothing');
  const size = terminalSize(ctx);
  const stdin = opts.stdin !== false;
  // start: a container still waiting for its first attach (a berth run -it that went away) starts now.
  return (await relayStream(ctx, { $case: 'attach', value: { container: container.trim(), stdin, start: true, ...(size ? { size } : {}) } }, { stdin })).code;
}

export const interactiveVerbs: Verb = (program, run) => {
  program
    .command('exec')
    .summary('run a command in a running container')
    .description('Run a command in a running container: in its namespaces and cgroup, with its environment, user and working directory unless given. The exit code is the command\'s. Every word after CONTAINER belongs to the command.')
    .argument('<container>', 'container name or unambiguous id prefix')
    .argument('<command...>', 'command and arguments')
    .option('-i, --interactive', 'forward this terminal\'s input to the command')
    .option('-t, --tty', 'give the command a terminal (with -i, this terminal is put in raw mode; Ctrl-P Ctrl-Q detaches)')
    .option('-e, --env <KEY=VALUE>', 'environment variable; "KEY" alone passes this shell\'s value (repeatable)', collect)
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'user[:group] to run as')
    .addHelpText('after', `
CONTAINER is a container's name or id prefix (a workload's replicas are named like web-1-0aab9; see berth ps).

Examples:
  berth run -d --name sleeper busybox sleep 3600
  berth exec sleeper cat /etc/hostname
  berth exec -it sleeper sh
  berth exec -e MODE=debug -w /tmp -u nobody sleeper env`)
    .action(run((ctx, _cmd: Command, opts: ExecOptions, args) => runExec(ctx, opts, args[0] as string, (args[1] as string[] | undefined) ?? [])));

  program
    .command('attach')
    .summary('attach to a running container\'s terminal or output')
    .description('Connect this terminal to a running container: a container with a terminal (run -t) gets this terminal\'s input and window size, and its screen comes back; a container without one shows its output from now on. Ends with the container\'s exit code when it exits; Ctrl-P Ctrl-Q detaches and leaves it running.')
    .argument('<container>', 'container name or unambiguous id prefix')
    .option('--no-stdin', 'do not forward this terminal\'s input')
    .addHelpText('after', `
Examples:
  berth run -d -it --name box busybox sh
  berth attach box`)
    .action(run((ctx, _cmd: Command, opts: { stdin?: boolean }, args) => runAttach(ctx, opts, args[0] as string)));
};
