/**
 * `berth run [-d] IMAGE [COMMAND] [ARG...]`: a one-off container through
 * ContainerService.Run. Every flag value is checked here before the call, so
 * a bad value creates nothing.
 *
 * Without -d the container is created waiting for its attach, and the attach
 * stream (StreamService.Attach, runWithTerminal in interactive.ts) starts it,
 * relays its output (and input with -i) and ends with its exit code, which
 * becomes this program's; with --rm the same stream removes it once it has
 * exited (Ctrl-C without -i stops it through ContainerService.Stop).
 */
import type { Command } from 'commander';
import type { ContainerSpec } from '../proto/gen/berth/v1/types.js';
import { separateCommand } from './argv.js';
import { UsageError, type CliContext } from './context.js';
import { parseSelector } from './output.js';
import type { Verb } from './verb.js';

export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const;

export interface RunOptions {
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  rm?: boolean;
  name?: string;
  env?: string[];
  envFile?: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  memory?: string;
  cpus?: string;
  pidsLimit?: string;
  restart?: string;
  label?: string[];
  publish?: string[];
  network?: string;
  node?: string;
  constraint?: string[];
  volume?: string[];
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function addEnv(env: Record<string, string>, raw: string, source: string, hostEnv: NodeJS.ProcessEnv): void {
  const i = raw.indexOf('=');
  const key = i < 0 ? raw : raw.slice(0, i);
  if (!ENV_KEY.test(key)) throw new UsageError(`${source}: expected KEY=VALUE with KEY made of letters, digits and "_", got "${raw}"`);
  if (i < 0) {
    // "-e KEY" passes this program's KEY, as docker does; unset means not passed.
    const v = hostEnv[key];
    if (v !== undefined) env[key] = v;
    return;
  }
  env[key] = raw.slice(i + 1);
}

async function quantity(kind: 'memory' | 'cpu' | 'pids', raw: string, flag: string): Promise<number> {
  const q = await import('../lib/quantity.js');
  try {
    return kind === 'memory' ? q.parseMemory(raw, flag) : kind === 'cpu' ? q.parseCpu(raw, flag) : q.parsePids(raw, flag);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** `-v NAME:/dest[:ro]` and `-v /host/path:/dest[:ro]` as mounts; UsageError naming the flag on a bad one. */
async function volumeFlags(values: readonly string[]): Promise<ContainerSpec['mounts']> {
  if (values.length === 0) return [];
  const { mountProblems, parseVolumeFlag } = await import('../lib/volumes.js');
  const mounts = values.map((v) => {
    try {
      return { ...parseVolumeFlag(v, '-v, --volume') };
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
  });
  const problem = mountProblems(mounts, '-v')[0];
  if (problem) throw new UsageError(`-v, --volume: ${problem.message}`);
  return mounts;
}

/** `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]` as ports; UsageError naming the flag on a bad one or a host port given twice. */
async function publishFlags(values: readonly string[]): Promise<ContainerSpec['ports']> {
  if (values.length === 0) return [];
  const { parsePublish } = await import('../lib/network.js');
  const seen = new Map<string, string>();
  return values.map((v) => {
    let p;
    try {
      p = parsePublish(v, '-p, --publish');
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    const key = `${p.hostPort}/${p.protocol}`;
    const other = seen.get(key);
    if (other !== undefined) throw new UsageError(`-p, --publish: host port ${key} is given twice ("${other}" and "${v}")`);
    seen.set(key, v);
    return { name: '', container: p.containerPort, publish: p.hostPort, protocol: p.protocol, ...(p.hostIp !== '' ? { hostIp: p.hostIp } : {}) };
  });
}

async function networkFlag(value: string): Promise<string> {
  const { parseNetworkMode } = await import('../lib/network.js');
  try {
    return parseNetworkMode(value, '--network');
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** Builds the Run request from the flags; throws UsageError naming the flag on any bad value. */
export async function buildRunRequest(ctx: CliContext, opts: RunOptions, image: string, command: readonly string[]): Promise<{ name: string; spec: ContainerSpec; node: string; nodeSelector: Record<string, string> }> {
  if (image.trim() === '') throw new UsageError('IMAGE: expected an image reference such as "busybox", got nothing');
  const env: Record<string, string> = {};
  for (const f of opts.envFile ?? []) {
    const { readFile } = await import('node:fs/promises');
    let text: string;
    try {
      text = await readFile(f, 'utf8');
    } catch (err) {
      throw new UsageError(`--env-file: failed to read "${f}": ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    text.split('\n').forEach((line, n) => {
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      addEnv(env, t, `--env-file ${f}:${n + 1}`, ctx.io.env);
    });
  }
  for (const e of opts.env ?? []) addEnv(env, e, '-e, --env', ctx.io.env);
  const memoryBytes = opts.memory !== undefined ? await quantity('memory', opts.memory, '-m, --memory') : 0;
  const cpuMillis = opts.cpus !== undefined ? await quantity('cpu', opts.cpus, '--cpus') : 0;
  const pids = opts.pidsLimit !== undefined ? await quantity('pids', opts.pidsLimit, '--pids-limit') : 0;
  const policy = opts.restart ?? 'never';
  if (!(RESTART_POLICIES as readonly string[]).includes(policy)) {
    throw new UsageError(`--restart: expected one of ${RESTART_POLICIES.join(', ')}, got "${opts.restart}"`);
  }
  const labels = opts.label ? parseSelector(opts.label) : {};
  const nodeSelector = opts.constraint ? parseSelector(opts.constraint) : {};
  const mounts = await volumeFlags(opts.volume ?? []);
  const entrypoint = opts.entrypoint !== undefined ? (opts.entrypoint === '' ? [] : [opts.entrypoint]) : [];
  const spec: ContainerSpec = {
    image: image.trim(),
    entrypoint,
    command: [...command],
    env,
    workingDir: opts.workdir ?? '',
    user: opts.user ?? '',
    resources: { cpuMillis, memoryBytes, pids },
    restart: { policy, backoffCapSeconds: 0 },
    ports: await publishFlags(opts.publish ?? []),
    ...(opts.network !== undefined ? { network: await networkFlag(opts.network) } : {}),
    mounts,
    tty: Boolean(opts.tty),
    stdin: Boolean(opts.interactive),
    hostname: '',
    labels,
    // Detached: the agent removes it when it exits. Attached: this program removes it after reading its exit code.
    autoRemove: Boolean(opts.rm && opts.detach),
  };
  return { name: opts.name ?? '', spec, node: opts.node ?? '', nodeSelector };
}

/** Options of `berth run` that take a value (the next word), long and short. */
const RUN_VALUE_OPTIONS = new Set(['--name', '-e', '--env', '--env-file', '-w', '--workdir', '-u', '--user', '--entrypoint', '-m', '--memory', '--cpus', '--pids-limit', '--restart', '-l', '--label', '--node', '--constraint', '-p', '--publish', '--network', '-v', '--volume']);

/**
 * Docker's rule for `run`: every word after IMAGE belongs to the container's
 * command, even words starting with "-". Returns argv with "--" inserted
 * after IMAGE (when the verb is run and there is no "--" before it), so the
 * parser leaves the command alone.
 */
export function separateRunCommand(argv: readonly string[]): string[] {
  return separateCommand(argv, 'run', RUN_VALUE_OPTIONS);
}


export async function runRun(ctx: CliContext, opts: RunOptions, image: string, command: readonly string[]): Promise<number> {
  const req = await buildRunRequest(ctx, opts, image, command);
  const { withController } = await import('./client.js');
  return withController(ctx, async (api) => {
    if (!opts.detach) {
      // Attached (with or without a terminal): created waiting for the attach stream, which
      // starts it, relays its output (and input with -i) and ends with its exit code.
      const { runWithTerminal } = await import('./interactive.js');
      return runWithTerminal(ctx, api, req, { interactive: Boolean(opts.interactive), rm: Boolean(opts.rm) });
    }
    const c = await api.runContainer(req);
    ctx.out(c.id);
    return 0;
  });
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export const runVerb: Verb = (program, run) => {
  program
    .command('run')
    .summary('run a one-off container')
    .description(`Run a container (not part of a workload) on a node the scheduler picks. With -d, print its id and return at once. Without -d, attach to it (it starts once attached, so no output is missed), print its output until it exits and exit with its exit code. Put "--" before a COMMAND whose arguments start with "-".`)
    .argument('<image>', 'image reference')
    .argument('[command...]', 'command and arguments (default: the image\'s)')
    .option('-d, --detach', 'print the container id and return')
    .option('-i, --interactive', 'forward this terminal\'s input to the container (its stdin; with -t, its terminal)')
    .option('-t, --tty', 'give the container a terminal; attached, this terminal is connected to it (raw mode with -i, window size followed; Ctrl-P Ctrl-Q detaches)')
    .option('--rm', 'remove the container when it exits (attached: once its exit code is known; with -d: by the agent)')
    .option('--name <name>', 'container name (default: generated)')
    .option('-e, --env <KEY=VALUE>', 'environment variable; "KEY" alone passes this shell\'s value (repeatable)', collect)
    .option('--env-file <file>', 'read KEY=VALUE lines (# comments) from a file (repeatable); note: Node.js 20 also reads this flag itself and stops with exit code 9 when the file is missing', collect)
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'user[:group] to run as')
    .option('--entrypoint <cmd>', 'override the image\'s entrypoint ("" clears it)')
    .option('-m, --memory <size>', 'memory limit, e.g. "64Mi", "512M", "1Gi"')
    .option('--cpus <n>', 'CPU limit in cores, e.g. "0.5", "2" or "500m"')
    .option('--pids-limit <n>', 'most processes')
    .option('--restart <policy>', `restart policy: ${RESTART_POLICIES.join(', ')} (default never)`)
    .option('-l, --label <k=v>', 'container label (repeatable)', collect)
    .option('--node <name>', 'run on this node only')
    .option('--constraint <k=v>', 'run on a node with this label (repeatable)', collect)
    .option('-p, --publish <[ip:]host:container[/proto]>', 'publish a container port on the node, e.g. 8080:80 or 10.0.0.2:5353:53/udp (repeatable; needs --network cluster)', collect)
    .option('--network <mode>', 'cluster (own address on the node\'s bridge, reachable from every node; default), host (the node\'s network) or none (loopback only)')
    .option('-v, --volume <src:dest[:ro]>', 'mount a named volume (NAME:/path, created on first use on the node the container runs on; a container using an existing volume runs on its node) or an allowed host path (/host/path:/path, see berth agent --allow-bind); ":ro" mounts it read-only (repeatable)', collect)
    .addHelpText('after', `
Examples:
  berth run -d --name sleeper busybox sleep 3600
  berth run busybox echo hello
  berth run -it --rm busybox sh
  berth run --rm busybox true
  berth run -d -m 64Mi --cpus 0.5 --restart on-failure -e MODE=debug busybox -- sh -c 'echo $MODE'
  berth run -d --node node-1 --constraint zone=a busybox sleep 60
  berth run -d -p 8080:80 busybox httpd -f -p 80
  berth run -v data:/data busybox sh -c 'date > /data/first'
  berth run --rm -v data:/data:ro -v /srv/config:/etc/app:ro busybox cat /data/first`)
    .action(run((ctx, _cmd: Command, opts: RunOptions, args) => runRun(ctx, opts, args[0] as string, (args[1] as string[] | undefined) ?? [])));
};
