/**
 * Container verbs in docker's shape: `berth start|restart|kill|wait|rename|
 * inspect|top|update|stats|cp`. Every flag value is checked here before any
 * call (a bad value changes nothing and exits 2); the controller checks again.
 * Containers are named by name or unambiguous id prefix.
 */
import type { Command } from 'commander';
import type { ContainerStats } from '../proto/gen/berth/v1/containers.js';
import { UsageError, type CliContext } from './context.js';
import { formatTable } from './output.js';
import type { Verb } from './verb.js';

async function checkSignal(raw: string): Promise<string> {
  const { parseSignal } = await import('../lib/signals.js');
  const parsed = parseSignal(raw);
  if ('problem' in parsed) throw new UsageError(`-s, --signal: ${parsed.problem}`);
  return parsed.spec;
}

export function parseSeconds(raw: string, flag: string): number {
  const t = raw.trim();
  if (!/^\d+$/.test(t) || Number(t) > 3600) throw new UsageError(`${flag}: expected whole seconds from 0 to 3600, got "${raw}"`);
  return Number(t);
}

async function quantity(kind: 'memory' | 'cpu' | 'pids', raw: string, flag: string): Promise<number> {
  const q = await import('../lib/quantity.js');
  let v: number;
  try {
    v = kind === 'memory' ? q.parseMemory(raw, flag) : kind === 'cpu' ? q.parseCpu(raw, flag) : q.parsePids(raw, flag);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (kind === 'memory' && v < 4 * 1024 * 1024) throw new UsageError(`${flag}: expected at least 4Mi (4194304 bytes), got "${raw}"`);
  if (kind === 'cpu' && v < 10) throw new UsageError(`${flag}: expected at least 0.01 CPUs, got "${raw}"`);
  if (kind === 'pids' && v < 1) throw new UsageError(`${flag}: expected at least 1 process, got "${raw}"`);
  return v;
}

/** Binary size as docker stats prints it: "1.5MiB", "64MiB", "980KiB", "12B". */
export function statsBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Math.max(0, n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 ? String(Math.round(v)) : v >= 100 ? v.toFixed(1) : v >= 10 ? v.toFixed(2) : v.toFixed(3);
  return `${text.replace(/\.?0+$/, '') || '0'}${units[i]}`;
}

export function statsRow(s: ContainerStats): { id: string; name: string; cpu: string; mem: string; memPerc: string; pids: string; node: string } {
  const running = s.state === 'running';
  const memPerc = s.memoryLimitBytes > 0 ? (s.memoryUsageBytes / s.memoryLimitBytes) * 100 : 0;
  return {
    id: s.id.slice(0, 12),
    name: s.name,
    cpu: running ? `${s.cpuPercent.toFixed(2)}%` : '--',
    mem: running ? `${statsBytes(s.memoryUsageBytes)} / ${statsBytes(s.memoryLimitBytes)}` : '-- / --',
    memPerc: running ? `${memPerc.toFixed(2)}%` : '--',
    pids: running ? String(s.pids) : '--',
    node: s.node || '-',
  };
}

export function statsTable(stats: readonly ContainerStats[]): string {
  const rows = stats.map((s) => {
    const r = statsRow(s);
    return [r.id, r.name, r.cpu, r.mem, r.memPerc, r.pids, r.node];
  });
  return formatTable(['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'PIDS', 'NODE'], rows);
}

/** "HH:MM:SS" of CPU time, as ps prints TIME. */
export function cpuTime(ms: number): string {
  const s = Math.floor(ms / 1000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

function checkFormat(raw: string | undefined): 'table' | 'json' {
  const v = (raw ?? 'table').trim().toLowerCase();
  if (v !== 'table' && v !== 'json') throw new UsageError(`--format: expected "table" or "json", got "${raw}"`);
  return v;
}

async function runStart(ctx: CliContext, names: string[]): Promise<number> {
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    const res = await api.start(names);
    for (const n of res.started) ctx.out(n);
    return 0;
  });
}

async function runRestart(ctx: CliContext, opts: { time?: string }, names: string[]): Promise<number> {
  const grace = opts.time !== undefined ? parseSeconds(opts.time, '-t, --time') : 0;
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    // 0 asks for the default on the wire; "-t 0" means kill at once, so it becomes 1 s.
    const res = await api.restart(names, opts.time !== undefined ? Math.max(1, grace) : 0);
    for (const n of res.restarted) ctx.out(n);
    return 0;
  });
}

async function runKill(ctx: CliContext, opts: { signal?: string }, names: string[]): Promise<number> {
  const signal = await checkSignal(opts.signal ?? 'KILL');
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    const res = await api.kill(names, signal);
    for (const n of res.killed) ctx.out(n);
    return 0;
  });
}

async function runWait(ctx: CliContext, names: string[]): Promise<number> {
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    // As docker: each exit code on its own line, in the order given; a failure for one is reported and the rest still waited for.
    let failed = false;
    for (const n of names) {
      try {
        const r = await api.wait(n);
        ctx.out(String(r.exitCode));
      } catch (err) {
        failed = true;
        ctx.io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
    return failed ? 1 : 0;
  });
}

async function runRename(ctx: CliContext, oldName: string, newName: string): Promise<number> {
  if (newName.trim() === '') throw new UsageError('NEW_NAME: expected a container name, got nothing');
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    await api.rename(oldName, newName);
    return 0;
  });
}

async function runInspect(ctx: CliContext, opts: { format?: string }, names: string[]): Promise<number> {
  if (opts.format !== undefined && opts.format.trim().toLowerCase() !== 'json') {
    throw new UsageError(`-f, --format: expected "json" (templates are not supported), got "${opts.format}"`);
  }
  const { withContainerVerbs } = await import('./container-client.js');
  const { inspectJson } = await import('./container-inspect.js');
  return withContainerVerbs(ctx, async (api) => {
    const out: unknown[] = [];
    let failed = false;
    // One call per name, so one unknown name does not hide the others (docker prints what it found).
    for (const n of names) {
      try {
        const res = await api.inspect([n]);
        for (const d of res.containers) out.push(inspectJson(d));
      } catch (err) {
        failed = true;
        ctx.io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
    ctx.out(JSON.stringify(out, null, 4));
    return failed ? 1 : 0;
  });
}

async function runTop(ctx: CliContext, name: string): Promise<number> {
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    const res = await api.top(name);
    ctx.out(formatTable(['PID', 'USER', 'TIME', 'CMD'], res.processes.map((p) => [String(p.pid), p.user, cpuTime(p.cpuMillis), p.command])));
    return 0;
  });
}

interface UpdateOptions { memory?: string; cpus?: string; pidsLimit?: string; pids?: string }

async function runUpdate(ctx: CliContext, opts: UpdateOptions, names: string[]): Promise<number> {
  if (opts.pidsLimit !== undefined && opts.pids !== undefined) throw new UsageError('--pids-limit and --pids are the same flag; expected one of them');
  const pidsRaw = opts.pidsLimit ?? opts.pids;
  const memoryBytes = opts.memory !== undefined ? await quantity('memory', opts.memory, '-m, --memory') : 0;
  const cpuMillis = opts.cpus !== undefined ? await quantity('cpu', opts.cpus, '--cpus') : 0;
  const pids = pidsRaw !== undefined ? await quantity('pids', pidsRaw, '--pids-limit') : 0;
  if (memoryBytes === 0 && cpuMillis === 0 && pids === 0) {
    throw new UsageError('expected at least one of -m/--memory, --cpus or --pids-limit');
  }
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    const res = await api.update({ containers: names, resources: { memoryBytes, cpuMillis, pids } });
    for (const n of res.updated) ctx.out(n);
    return 0;
  });
}

interface StatsOptions { all?: boolean; stream?: boolean; format?: string }

async function runStats(ctx: CliContext, opts: StatsOptions, names: string[]): Promise<number> {
  const format = checkFormat(opts.format);
  // commander sets stream=false for --no-stream.
  const stream = opts.stream !== false;
  const tty = Boolean((ctx.io.stdout as NodeJS.WriteStream).isTTY);
  const { withContainerVerbs } = await import('./container-client.js');
  return withContainerVerbs(ctx, async (api) => {
    const ac = new AbortController();
    const onSigint = (): void => ac.abort();
    if (stream) process.once('SIGINT', onSigint);
    try {
      await api.stats({ containers: names, all: Boolean(opts.all), stream }, (res) => {
        if (format === 'json') {
          for (const s of res.stats) {
            const r = statsRow(s);
            ctx.out(JSON.stringify({
              ID: r.id, Container: s.id, Name: s.name, Node: s.node, CPUPerc: r.cpu, MemUsage: r.mem, MemPerc: r.memPerc, PIDs: r.pids, State: s.state,
              CpuPercent: s.cpuPercent, MemoryUsageBytes: s.memoryUsageBytes, MemoryLimitBytes: s.memoryLimitBytes, Pids: s.pids, PidsLimit: s.pidsLimit,
            }));
          }
        } else {
          // A terminal gets one refreshing screen, as docker stats; a pipe gets one table per sample.
          if (stream && tty) ctx.io.stdout.write('\u001b[2J\u001b[H');
          ctx.io.stdout.write(statsTable(res.stats));
        }
        for (const u of res.unreachable) ctx.io.stderr.write(`warning: ${u}\n`);
      }, ac.signal);
      return 0;
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
  });
}

/** "NAME:PATH" -> container and absolute path; a local path (no ":" before the first "/") -> undefined. */
export function parseCopyArg(raw: string): { container: string; path: string } | undefined {
  if (raw.startsWith('/') || raw.startsWith('.') || raw === '-') return undefined;
  const i = raw.indexOf(':');
  if (i <= 0) return undefined;
  const slash = raw.indexOf('/');
  if (slash >= 0 && slash < i) return undefined;
  const path = raw.slice(i + 1);
  // docker cp: container paths are relative to the container's root; the leading "/" is optional.
  return { container: raw.slice(0, i), path: path.startsWith('/') ? path : `/${path}` };
}

async function runCp(ctx: CliContext, src: string, dst: string): Promise<number> {
  const from = parseCopyArg(src);
  const to = parseCopyArg(dst);
  if (from && to) throw new UsageError('copying between two containers is not supported; expected one local path and one CONTAINER:PATH');
  if (!from && !to) throw new UsageError(`expected one of SRC and DEST to be CONTAINER:PATH, got "${src}" and "${dst}"`);
  const { withContainerVerbs } = await import('./container-client.js');
  const { realpath, stat, lstat } = await import('node:fs/promises');
  const { dirname, basename, resolve } = await import('node:path');
  const { packPath, unpackTo } = await import('../lib/copy.js');
  if (from) {
    if (dst === '-') {
      // The raw tar stream on stdout, as docker cp does.
      return withContainerVerbs(ctx, async (api) => {
        await api.copyFrom(from.container, from.path, async (data) => {
          if (!ctx.io.stdout.write(data)) await new Promise<void>((r) => ctx.io.stdout.once('drain', () => r()));
        });
        return 0;
      });
    }
    const abs = resolve(dst);
    const st = await stat(abs).catch(() => undefined);
    let root: string;
    let dest: string;
    if (st?.isDirectory()) {
      root = await realpath(abs);
      dest = '';
    } else {
      if (dst.endsWith('/')) throw new UsageError(`DEST: the local directory "${dst}" does not exist`);
      const parent = await realpath(dirname(abs)).catch(() => undefined);
      if (parent === undefined) throw new UsageError(`DEST: the local directory "${dirname(abs)}" does not exist`);
      root = parent;
      dest = basename(abs);
    }
    return withContainerVerbs(ctx, async (api) => {
      const unpacker = unpackTo(root, dest);
      let res: { entries: number; bytes: number };
      try {
        await api.copyFrom(from.container, from.path, async (data) => unpacker.write(data));
        res = unpacker.finish();
      } catch (err) {
        unpacker.abort();
        throw err;
      }
      if ((ctx.io.stderr as NodeJS.WriteStream).isTTY) ctx.io.stderr.write(`Successfully copied ${statsBytes(res.bytes)} to ${dst}\n`);
      return 0;
    });
  }
  const target = to!;
  if (src === '-') {
    return withContainerVerbs(ctx, async (api) => {
      await api.copyTo(target.container, target.path, ctx.io.stdin as AsyncIterable<Buffer>);
      return 0;
    });
  }
  const abs = resolve(src);
  if (!(await lstat(abs).catch(() => undefined))) throw new UsageError(`SRC: the local path "${src}" does not exist`);
  const root = await realpath(dirname(abs));
  return withContainerVerbs(ctx, async (api) => {
    // A queue between the packer (local files) and the gRPC stream.
    const queue: Buffer[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    let failure: unknown;
    let waitRoom: (() => void) | undefined;
    const packed = packPath(root, basename(abs), {
      write: async (chunk) => {
        queue.push(Buffer.from(chunk));
        wake?.();
        if (queue.length > 64) await new Promise<void>((r) => { waitRoom = r; });
      },
    }).then(() => { done = true; wake?.(); }, (err: unknown) => { failure = err; done = true; wake?.(); });
    async function* chunks(): AsyncIterable<Buffer> {
      for (;;) {
        const next = queue.shift();
        if (next) {
          if (queue.length <= 16) { waitRoom?.(); waitRoom = undefined; }
          yield next;
          continue;
        }
        if (failure !== undefined) throw failure;
        if (done) return;
        await new Promise<void>((r) => { wake = r; });
        wake = undefined;
      }
    }
    const res = await api.copyTo(target.container, target.path, chunks());
    await packed;
    if ((ctx.io.stderr as NodeJS.WriteStream).isTTY) ctx.io.stderr.write(`Successfully copied ${statsBytes(Number(res.bytes))} to ${dst}\n`);
    return 0;
  });
}

export const containerVerbCommands: Verb = (program, run) => {
  program
    .command('start')
    .summary('start stopped containers')
    .description('Start exited containers again: same id, name and filesystem (what the container wrote is still there). Running containers are left as they are.')
    .argument('<containers...>', 'container names or id prefixes')
    .addHelpText('after', '\nExamples:\n  berth start old-job\n  berth start 3f2a9c web-debug')
    .action(run((ctx, _cmd: Command, _opts: object, args) => runStart(ctx, args[0] as string[])));

  program
    .command('restart')
    .summary('restart containers')
    .description('Stop containers (SIGTERM, then SIGKILL after the grace period) and start them again.')
    .argument('<containers...>', 'container names or id prefixes')
    .option('-t, --time <seconds>', 'seconds to wait after SIGTERM before SIGKILL (default 10)')
    .addHelpText('after', '\nExamples:\n  berth restart web-debug\n  berth restart -t 2 3f2a9c')
    .action(run((ctx, _cmd: Command, opts: { time?: string }, args) => runRestart(ctx, opts, args[0] as string[])));

  program
    .command('kill')
    .summary('send a signal to running containers')
    .description('Send a signal (default KILL) to the main process of running containers.')
    .argument('<containers...>', 'container names or id prefixes')
    .option('-s, --signal <signal>', 'signal name (KILL, TERM, HUP, SIGUSR1, ...) or number', 'KILL')
    .addHelpText('after', '\nExamples:\n  berth kill web-debug\n  berth kill -s HUP web-0\n  berth kill --signal 15 3f2a9c')
    .action(run((ctx, _cmd: Command, opts: { signal?: string }, args) => runKill(ctx, opts, args[0] as string[])));

  program
    .command('wait')
    .summary('wait for containers to exit and print their exit codes')
    .description('Block until each container has exited, then print its exit code (one line per container, in order). An exited container answers at once.')
    .argument('<containers...>', 'container names or id prefixes')
    .addHelpText('after', '\nExamples:\n  berth wait job-1\n  code=$(berth wait job-1)')
    .action(run((ctx, _cmd: Command, _opts: object, args) => runWait(ctx, args[0] as string[])));

  program
    .command('rename')
    .summary('rename a container')
    .description('Give a container a new name, unused by any container of the cluster. Its hostname stays as it was.')
    .argument('<container>', 'container name or id prefix')
    .argument('<new-name>', 'the new name (letters, digits and "-")')
    .addHelpText('after', '\nExamples:\n  berth rename brave_turing web-debug')
    .action(run((ctx, _cmd: Command, _opts: object, args) => runRename(ctx, args[0] as string, args[1] as string)));

  program
    .command('inspect')
    .summary('show containers in detail (JSON)')
    .description('Print a JSON array with one object per container: id, name, config (image, command, env, working dir, user, labels), state (status, pid, exit code, reason, times), mounts, limits, node, log path and restart count.')
    .argument('<containers...>', 'container names or id prefixes')
    .option('-f, --format <format>', '"json" (the default; templates are not supported)')
    .addHelpText('after', '\nExamples:\n  berth inspect web-debug\n  berth inspect 3f2a9c old-job | jq \'.[].State.ExitCode\'')
    .action(run((ctx, _cmd: Command, opts: { format?: string }, args) => runInspect(ctx, opts, args[0] as string[])));

  program
    .command('top')
    .summary('list the processes of a running container')
    .description('List the processes inside a running container (its pid namespace on its node): host PID, USER (from the container\'s /etc/passwd), CPU TIME and command line.')
    .argument('<container>', 'container name or id prefix')
    .addHelpText('after', '\nExamples:\n  berth top web-debug')
    .action(run((ctx, _cmd: Command, _opts: object, args) => runTop(ctx, args[0] as string)));

  program
    .command('update')
    .summary('change the limits of containers without restarting them')
    .description('Change memory, CPU and pids limits of containers. Running containers get them at once (cgroups); every later start keeps them. Limits not given stay as they are.')
    .argument('<containers...>', 'container names or id prefixes')
    .option('-m, --memory <bytes>', 'memory limit: 128Mi, 1Gi, 500M, ... (at least 4Mi)')
    .option('--cpus <cpus>', 'CPU limit in cores: 0.5, 2, 250m')
    .option('--pids-limit <n>', 'most processes at once')
    .option('--pids <n>', 'same as --pids-limit')
    .addHelpText('after', '\nExamples:\n  berth update --memory 128Mi --cpus 0.5 web-debug\n  berth update --pids-limit 100 3f2a9c old-job')
    .action(run((ctx, _cmd: Command, opts: UpdateOptions, args) => runUpdate(ctx, opts, args[0] as string[])));

  program
    .command('stats')
    .summary('show the resource use of containers')
    .description('Show CPU %, memory use and limit, memory % and process count of running containers (or the ones named), from their cgroups. Refreshes every second until Ctrl-C, unless --no-stream.')
    .argument('[containers...]', 'container names or id prefixes (default: every running container)')
    .option('-a, --all', 'include containers that are not running')
    .option('--no-stream', 'print one sample and exit')
    .option('--format <format>', '"table" (default) or "json" (one JSON object per container and sample)')
    .addHelpText('after', '\nExamples:\n  berth stats\n  berth stats --no-stream web-debug\n  berth stats --no-stream --format json')
    .action(run((ctx, _cmd: Command, opts: StatsOptions, args) => runStats(ctx, opts, (args[0] as string[] | undefined) ?? [])));

  program
    .command('cp')
    .summary('copy files between a container and the local machine')
    .description('Copy a file or directory out of a container (CONTAINER:PATH LOCAL) or into one (LOCAL CONTAINER:PATH). Paths in the container are resolved inside its root filesystem: symlinks on the way are refused, never followed out of it. An existing directory receives the copy under its own name; otherwise the copy takes the destination name. "-" as LOCAL reads or writes a tar stream.')
    .argument('<src>', 'CONTAINER:PATH or a local path')
    .argument('<dest>', 'CONTAINER:PATH or a local path')
    .addHelpText('after', '\nExamples:\n  berth cp web-debug:/etc/hosts ./hosts\n  berth cp ./config web-debug:/etc/app\n  berth cp web-debug:/var/log - | tar -t')
    .action(run((ctx, _cmd: Command, _opts: object, args) => runCp(ctx, args[0] as string, args[1] as string)));
};
