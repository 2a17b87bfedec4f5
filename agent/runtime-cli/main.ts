#!/usr/bin/env node
/**
 * berth-runtime: Berth's container runtime as a command with the OCI runtime
 * command-line verbs, so it runs side by side with crun and runc:
 *
 *   berth-runtime [--root DIR] create --bundle DIR [--pid-file F] ID
 *   berth-runtime [--root DIR] start ID
 *   berth-runtime [--root DIR] state ID          runtime-spec state JSON
 *   berth-runtime [--root DIR] kill ID [SIGNAL]  default SIGTERM
 *   berth-runtime [--root DIR] delete [--force] ID
 *   berth-runtime [--root DIR] run --bundle DIR ID    attached; exits with the container's status
 * and Berth's own:
 *   list | logs [--tail N] [--since T] [-f] ID | update [--memory B] [--cpus N] [--pids N] ID
 *   stats ID | stop [--time S] ID | exec [-t] [--cwd D] [--env K=V] [--user U] ID CMD...
 *
 * Startup stays lean: only node builtins and agent/runtime + agent/sys load.
 */
import { LinuxSys } from '../sys/linux.js';
import { cpuPercent, detectCgroups, parseSince, Runtime, DEFAULT_ROOT, type Resources } from '../runtime/index.js';
import { BerthError } from '../../lib/errors.js';

class UsageError extends Error {}

const USAGE = `usage: berth-runtime [--root DIR] <command> ...
  create --bundle DIR [--pid-file FILE] ID
  start ID
  state ID
  kill ID [SIGNAL]
  delete [--force] ID
  run --bundle DIR ID
  list
  logs [--tail N] [--since TIME] [--follow] [--timestamps] ID
  update [--memory BYTES] [--cpus N] [--pids N] ID
  stats ID
  stop [--time SECONDS] ID
  exec [-t] [--cwd DIR] [--env K=V] [--user U] ID COMMAND...`;

interface Parsed {
  flags: Map<string, string | true>;
  positional: string[];
}

/** Parses `--flag value`, `--flag=value` and boolean flags; `valued` lists flags that take a value. */
function parse(args: string[], valued: Record<string, string>, booleans: Record<string, string>): Parsed {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') { positional.push(...args.slice(i + 1)); break; }
    if (a.startsWith('-') && a !== '-') {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(0, eq) : a;
      const key = valued[name] ?? booleans[name];
      if (!key) throw new UsageError(`unknown option "${name}"`);
      if (valued[name]) {
        const v = eq > 0 ? a.slice(eq + 1) : args[++i];
        if (v === undefined) throw new UsageError(`option "${name}" needs a value`);
        flags.set(key, v);
      } else {
        flags.set(key, true);
      }
    } else {
      positional.push(a);
    }
  }
  return { flags, positional };
}

function one(p: Parsed, what: string): string {
  if (p.positional.length !== 1) throw new UsageError(`expected exactly one ${what}, got ${p.positional.length}`);
  return p.positional[0] as string;
}

function wholeNumber(value: string | true | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`${flag}: expected a whole number, got "${String(value)}"`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  let i = 0;
  const globals = new Map<string, string>();
  while (i < argv.length && (argv[i] as string).startsWith('-')) {
    const a = argv[i] as string;
    const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    if (name === '--root' || name === '--log' || name === '--log-format') {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`option "${name}" needs a value`);
      globals.set(name, v);
    } else if (name === '--help' || name === '-h') {
      process.stdout.write(USAGE + '\n');
      return 0;
    } else if (name === '--systemd-cgroup') {
      throw new UsageError('--systemd-cgroup is not supported (berth-runtime manages cgroupfs directly)');
    } else if (name !== '--debug') {
      throw new UsageError(`unknown option "${name}"`);
    }
    i++;
  }
  const verb = argv[i];
  const args = argv.slice(i + 1);
  if (!verb) throw new UsageError('missing command');
  const sys = new LinuxSys({ spawner: false }); // one container per run: no use keeping a spawner
  const runtime = new Runtime({ sys, cgroups: await detectCgroups(sys), root: globals.get('--root') ?? DEFAULT_ROOT });

  switch (verb) {
    case 'create': {
      const p = parse(args, { '--bundle': 'bundle', '-b': 'bundle', '--pid-file': 'pidFile', '--console-socket': 'console' }, { '--no-pivot': 'x', '--no-new-keyring': 'x' });
      if (p.flags.has('console')) throw new UsageError('--console-socket is not supported: a terminal container is reached through its attach socket (<root>/<id>/attach)');
      const id = one(p, 'container id');
      const bundle = (p.flags.get('bundle') as string | undefined) ?? process.cwd();
      const pidFile = p.flags.get('pidFile') as string | undefined;
      await runtime.create(id, bundle, pidFile ? { pidFile } : {});
      return 0;
    }
    case 'start':
      await runtime.start(one(parse(args, {}, {}), 'container id'));
      return 0;
    case 'state': {
      const info = await runtime.state(one(parse(args, {}, {}), 'container id'));
      const state = {
        ociVersion: '1.0.2', id: info.id, status: info.status, ...(info.pid && info.status !== 'stopped' ? { pid: info.pid } : {}),
        bundle: info.bundle, annotations: info.annotations,
        ...(info.exit ? { exitCode: info.exit.exitCode, exitReason: info.exit.reason } : {}),
      };
      process.stdout.write(JSON.stringify(state, null, 2) + '\n');
      return 0;
    }
    case 'kill': {
      const p = parse(args, {}, { '--all': 'all', '-a': 'all' });
      if (p.positional.length < 1 || p.positional.length > 2) throw new UsageError('expected ID [SIGNAL]');
      await runtime.kill(p.positional[0] as string, p.positional[1] ?? 'SIGTERM');
      return 0;
    }
    case 'delete': {
      const p = parse(args, {}, { '--force': 'force', '-f': 'force' });
      await runtime.delete(one(p, 'container id'), { force: p.flags.has('force') });
      return 0;
    }
    case 'run': {
      const p = parse(args, { '--bundle': 'bundle', '-b': 'bundle', '--pid-file': 'pidFile' }, { '--detach': 'detach', '-d': 'detach', '--no-pivot': 'x', '--no-new-keyring': 'x' });
      const id = one(p, 'container id');
      const bundle = (p.flags.get('bundle') as string | undefined) ?? process.cwd();
      if (p.flags.has('detach')) {
        await runtime.create(id, bundle, { start: true });
        return 0;
      }
      return await runtime.runAttached(id, bundle);
    }
    case 'list': {
      const all = await runtime.list();
      process.stdout.write('ID\tPID\tSTATUS\tBUNDLE\tCREATED\n');
      for (const c of all) process.stdout.write(`${c.id}\t${c.pid ?? 0}\t${c.status}\t${c.bundle}\t${c.createdAt}\n`);
      return 0;
    }
    case 'logs': {
      const p = parse(args, { '--tail': 'tail', '--since': 'since' }, { '--follow': 'follow', '-f': 'follow', '--timestamps': 'ts', '-t': 'ts' });
      const id = one(p, 'container id');
      const tail = wholeNumber(p.flags.get('tail'), '--tail');
      const since = p.flags.get('since');
      const ac = new AbortController();
      process.on('SIGINT', () => ac.abort());
      for await (const e of runtime.logs(id, {
        ...(tail !== undefined ? { tail } : {}), ...(typeof since === 'string' ? { since: parseSince(since) } : {}),
        follow: p.flags.has('follow'), signal: ac.signal,
      })) {
        const out = e.stream === 'stderr' ? process.stderr : process.stdout;
        out.write(`${p.flags.has('ts') ? e.time + ' ' : ''}${e.text}${e.partial ? '' : '\n'}`);
      }
      return 0;
    }
    case 'update': {
      const p = parse(args, { '--memory': 'memory', '--cpus': 'cpus', '--pids': 'pids', '--cpu-shares': 'shares' }, {});
      const id = one(p, 'container id');
      const r: Resources = {};
      const mem = wholeNumber(p.flags.get('memory'), '--memory');
      if (mem !== undefined) r.memoryBytes = mem;
      const cpus = p.flags.get('cpus');
      if (typeof cpus === 'string') {
        const n = Number(cpus);
        if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--cpus: expected a positive number, got "${cpus}"`);
        r.cpuQuotaUs = Math.round(n * 100000);
        r.cpuPeriodUs = 100000;
      }
      const pids = wholeNumber(p.flags.get('pids'), '--pids');
      if (pids !== undefined) r.pidsMax = pids;
      const shares = wholeNumber(p.flags.get('shares'), '--cpu-shares');
      if (shares !== undefined) r.cpuShares = shares;
      await runtime.update(id, r);
      return 0;
    }
    case 'exec': {
      // Options end at the container id; everything after it is the command.
      const idAt = args.findIndex((a, i) => !a.startsWith('-') && !['--cwd', '--env', '-e', '--user', '-u'].includes(args[i - 1] ?? ''));
      if (idAt < 0 || idAt === args.length - 1) throw new UsageError('expected [OPTIONS] ID COMMAND...');
      const p = parse(args.slice(0, idAt), { '--cwd': 'cwd', '--user': 'user', '-u': 'user', '--env': 'env', '-e': 'env' }, { '--tty': 'tty', '-t': 'tty', '--interactive': 'i', '-i': 'i', '-it': 'tty', '-ti': 'tty' });
      const env: string[] = [];
      for (let j = 0; j < idAt; j++) if ((args[j] === '--env' || args[j] === '-e') && args[j + 1]) env.push(args[j + 1] as string);
      const cwd = p.flags.get('cwd');
      const user = p.flags.get('user');
      const r = await runtime.exec(args[idAt] as string, {
        args: args.slice(idAt + 1), env, stdio: 'inherit', tty: p.flags.has('tty'),
        ...(typeof cwd === 'string' ? { cwd } : {}), ...(typeof user === 'string' ? { user } : {}),
      });
      return r.exitCode;
    }
    case 'stats': {
      // Two samples 250 ms apart give the CPU use.
      const id = one(parse(args, {}, {}), 'container id');
      const first = await runtime.stats(id);
      await new Promise((r) => setTimeout(r, 250));
      const s = await runtime.stats(id);
      process.stdout.write(JSON.stringify({ ...s, cpuPercent: Math.round(cpuPercent(first, s) * 10) / 10 }, null, 2) + '\n');
      return 0;
    }
    case 'stop': {
      const p = parse(args, { '--time': 'time', '-t': 'time' }, {});
      const t = wholeNumber(p.flags.get('time'), '--time');
      const exit = await runtime.stop(one(p, 'container id'), t !== undefined ? { timeoutMs: t * 1000 } : {});
      process.stdout.write(JSON.stringify(exit) + '\n');
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${verb}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`berth-runtime: ${err.message}\n${USAGE}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`berth-runtime: ${err instanceof BerthError || err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
