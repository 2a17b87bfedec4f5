/**
 * Container verbs: `berth ps`, `berth get replicas|containers`, `berth logs`
 * and `berth rm`. Tables follow `docker ps` (ps) and kubectl (get).
 */
import { Option, type Command } from 'commander';
import type { Container, LogLine } from '../proto/gen/berth/v1/types.js';
import { UsageError, type CliContext } from './context.js';
import { formatAge, formatJson, formatTable, formatYaml, parseOutputFormat, parseSelector } from './output.js';
import type { Verb } from './verb.js';

// ContainerState values (proto/berth/v1/types.proto); numbers so this file loads no generated code.
const PENDING = 1;
const CREATED = 2;
const RUNNING = 3;
const EXITED = 4;
const REMOVED = 5;

export function stateName(state: number | undefined): string {
  switch (state) {
    case PENDING: return 'pending';
    case CREATED: return 'created';
    case RUNNING: return 'running';
    case EXITED: return 'exited';
    case REMOVED: return 'removed';
    default: return 'unknown';
  }
}

/** Docker-style elapsed time: "Less than a second", "5 seconds", "About a minute", "3 minutes", "About an hour", "2 hours", "4 days", "3 weeks", "5 months", "2 years". */
export function humanDuration(ms: number): string {
  const s = Math.floor(Math.max(0, ms) / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

/** `docker ps` STATUS: "Up 3 minutes", "Up 3 minutes (healthy)", "Draining (up 3 minutes)", "Exited (0) 5 seconds ago", "Created", "Pending". */
export function containerStatusText(c: Container, nowMs = Date.now()): string {
  const st = c.status;
  switch (st?.state) {
    case RUNNING: {
      const up = `Up ${humanDuration(nowMs - (st.startedUnixMs || c.createdUnixMs))}`;
      // Out of every service's rotation, about to get its stop signal (connection draining).
      if (st.draining) return `Draining (${up.toLowerCase()})`;
      return st.health ? `${up} (${st.health})` : up;
    }
    case EXITED:
      return st.finishedUnixMs ? `Exited (${st.exitCode}) ${humanDuration(nowMs - st.finishedUnixMs)} ago` : `Exited (${st.exitCode})`;
    case CREATED: return 'Created';
    case PENDING: return st.reason ? `Pending (${st.reason})` : 'Pending';
    case REMOVED: return 'Removed';
    default: return 'Unknown';
  }
}

/** `docker ps` COMMAND: entrypoint and command, quoted, cut to 20 characters with "…". */
export function commandText(c: Container, full = false): string {
  const text = [...(c.spec?.entrypoint ?? []), ...(c.spec?.command ?? [])].join(' ');
  const cut = !full && text.length > 20 ? `${text.slice(0, 19)}…` : text;
  return `"${cut}"`;
}

export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

export interface PsFilters {
  status?: string[];
  name?: string[];
  label?: Record<string, string>;
  node?: string[];
}

/** `unknown`: the container's node is lost (NotReady); its last reported state cannot be trusted. */
const PS_STATUSES = ['pending', 'created', 'running', 'exited', 'removed', 'unknown'];

/** Parses repeated "--filter key=value" into filters; unknown keys and statuses are usage errors. */
export function parsePsFilters(values: readonly string[] | undefined): PsFilters {
  const f: PsFilters = {};
  for (const raw of values ?? []) {
    const i = raw.indexOf('=');
    const key = i > 0 ? raw.slice(0, i).trim() : '';
    const value = i > 0 ? raw.slice(i + 1).trim() : '';
    if (!key || !value) throw new UsageError(`--filter: expected key=value (status, name, label or node), got "${raw}"`);
    if (key === 'status') {
      if (!PS_STATUSES.includes(value)) throw new UsageError(`--filter status: expected one of ${PS_STATUSES.join(', ')}, got "${value}"`);
      (f.status ??= []).push(value);
    } else if (key === 'name') (f.name ??= []).push(value);
    else if (key === 'node') (f.node ??= []).push(value);
    else if (key === 'label') Object.assign((f.label ??= {}), parseSelector([value]));
    else throw new UsageError(`--filter: unknown key "${key}"; expected status, name, label or node`);
  }
  return f;
}

export function matchesPsFilters(c: Container, f: PsFilters): boolean {
  if (f.status && !f.status.includes(stateName(c.status?.state))) return false;
  if (f.name && !f.name.some((n) => c.name.includes(n))) return false;
  if (f.node && !f.node.includes(c.node)) return false;
  if (f.label && !Object.entries(f.label).every(([k, v]) => c.spec?.labels[k] === v)) return false;
  return true;
}

/** Published ports as docker shows them: "8080->80/tcp", "10.0.0.2:53->5353/udp"; "-" for none. */
export function portsText(c: Container): string {
  const ports = (c.spec?.ports ?? []).filter((p) => p.publish > 0);
  if (ports.length === 0) return '-';
  return ports.map((p) => `${p.hostIp ? `${p.hostIp}:` : ''}${p.publish}->${p.container}/${p.protocol || 'tcp'}`).join(', ');
}

export function psTable(items: readonly Container[], nowMs = Date.now()): string {
  const rows = items.map((c) => [
    shortId(c.id),
    c.spec?.image ?? '',
    commandText(c),
    `${humanDuration(nowMs - c.createdUnixMs)} ago`,
    containerStatusText(c, nowMs),
    portsText(c),
    c.name,
    c.node || '-',
    c.status?.ipAddress || '-',
  ]);
  return formatTable(['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES', 'NODE', 'IP'], rows);
}

function newestFirst(a: Container, b: Container): number {
  return b.createdUnixMs - a.createdUnixMs || (a.name < b.name ? -1 : 1);
}

export interface PsOptions {
  all?: boolean;
  quiet?: boolean;
  filter?: string[];
  format?: string;
}

export async function runPs(ctx: CliContext, opts: PsOptions): Promise<number> {
  const filters = parsePsFilters(opts.filter);
  if (opts.format !== undefined && opts.format !== 'json' && opts.format !== 'table') {
    throw new UsageError(`--format: expected "table" or "json", got "${opts.format}"`);
  }
  // A status filter other than running implies -a, as in docker.
  const all = Boolean(opts.all) || Boolean(filters.status?.some((s) => s !== 'running'));
  const { withController } = await import('./client.js');
  const { Container: ContainerMsg } = await import('../proto/gen/berth/v1/types.js');
  return withController(ctx, async (api) => {
    const node = filters.node?.length === 1 ? filters.node[0] ?? '' : '';
    const res = await api.listContainers({ all, node });
    const items = res.containers.filter((c) => matchesPsFilters(c, filters)).sort(newestFirst);
    if (opts.quiet) {
      for (const c of items) ctx.out(shortId(c.id));
    } else if (opts.format === 'json') {
      ctx.out(formatJson(items.map((c) => ContainerMsg.toJSON(c))));
    } else {
      ctx.out(psTable(items));
    }
    return 0;
  });
}

/** kubectl-style replica table: NAME, WORKLOAD, NODE, STATE, HEALTH, RESTARTS, AGE (wide adds ID, IMAGE, REVISION, IP). */
export function replicaTable(items: readonly Container[], wide: boolean, nowMs = Date.now()): string {
  const headers = ['NAME', 'WORKLOAD', 'NODE', 'STATE', 'HEALTH', 'RESTARTS', 'AGE'];
  if (wide) headers.push('ID', 'IMAGE', 'REVISION', 'IP');
  const rows = items.map((c) => {
    const row = [
      c.name,
      c.workload || '-',
      c.node || '-',
      stateName(c.status?.state),
      c.status?.health || '-',
      String(c.status?.restartCount ?? 0),
      formatAge(c.createdUnixMs, nowMs),
    ];
    if (wide) row.push(shortId(c.id), c.spec?.image ?? '', c.workload ? String(c.revision) : '-', c.status?.ipAddress || '-');
    return row;
  });
  return formatTable(headers, rows);
}

export async function runGetReplicas(ctx: CliContext, opts: { output?: string; selector?: string[] }, name: string | undefined): Promise<number> {
  const format = parseOutputFormat(opts.output);
  const selector = parseSelector(opts.selector);
  const { withController } = await import('./client.js');
  const { Container: ContainerMsg } = await import('../proto/gen/berth/v1/types.js');
  const { NotFoundError } = await import('../lib/errors.js');
  return withController(ctx, async (api) => {
    const res = await api.listContainers({ all: true, selector });
    let items = [...res.containers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (name !== undefined) {
      items = items.filter((c) => c.name === name || c.id.startsWith(name));
      if (items.length === 0) throw new NotFoundError('container', name);
    }
    if (format === 'table' || format === 'wide') {
      if (items.length === 0) ctx.io.stderr.write('No containers found.\n');
      else ctx.out(replicaTable(items, format === 'wide'));
    } else {
      const value = items.map((c) => ContainerMsg.toJSON(c));
      ctx.out(format === 'json' ? formatJson(value) : await formatYaml(value));
    }
    return 0;
  });
}

/** "--since": a duration ("30s", "10m", "2h", "1d") before now, or an ISO 8601 time. */
export function parseSince(raw: string, nowMs = Date.now()): number {
  const t = raw.trim();
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(t);
  if (m) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return Math.max(1, Math.floor(nowMs - Number(m[1]) * unit));
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(t)) {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  }
  throw new UsageError(`--since: expected a duration such as "30s", "10m", "2h" or a time such as "2026-01-02T15:04:05Z", got "${raw}"`);
}

export function parseTail(raw: string | undefined): number {
  if (raw === undefined || raw === 'all') return 0;
  const t = raw.trim();
  if (!/^\d+$/.test(t) || Number(t) > 1_000_000) throw new UsageError(`--tail: expected a number of lines (0 to 1000000) or "all", got "${raw}"`);
  return Number(t);
}

export interface LogsOptions {
  follow?: boolean;
  tail?: string;
  since?: string;
  timestamps?: boolean;
}

/** Writes one log line to stdout or stderr (as the container wrote it), optionally with its time. */
export function writeLogLine(ctx: CliContext, line: LogLine, timestamps: boolean): void {
  const stream = line.stream === 'stderr' ? ctx.io.stderr : ctx.io.stdout;
  if (timestamps) stream.write(`${new Date(line.unixMs).toISOString()} `);
  stream.write(Buffer.from(line.data));
}

/** Like writeLogLine, with "[name] " before every line (for `logs workload/NAME`). */
export function writePrefixedLogLine(ctx: CliContext, line: LogLine, timestamps: boolean, prefix: string): void {
  const stream = line.stream === 'stderr' ? ctx.io.stderr : ctx.io.stdout;
  const time = timestamps ? `${new Date(line.unixMs).toISOString()} ` : '';
  const text = Buffer.from(line.data).toString('utf8');
  const parts = text.split('\n');
  if (parts[parts.length - 1] === '') parts.pop();
  stream.write(parts.map((p) => `[${prefix}] ${time}${p}\n`).join(''));
}

export async function runLogs(ctx: CliContext, opts: LogsOptions, container: string): Promise<number> {
  const tail = parseTail(opts.tail);
  const sinceUnixMs = opts.since !== undefined ? parseSince(opts.since) : 0;
  const { withController } = await import('./client.js');
  const workload = /^(?:workload|workloads|wl)\/(.+)$/.exec(container)?.[1];
  if (workload !== undefined) {
    // Every replica of the workload that is not removed, each line prefixed with the replica's name.
    return withController(ctx, async (api) => {
      await api.getWorkload(workload);
      const res = await api.listContainers({ all: true, workload });
      const replicas = res.containers.filter((c) => c.status?.state !== REMOVED).sort((a, b) => (a.name < b.name ? -1 : 1));
      if (replicas.length === 0) ctx.io.stderr.write(`workload "${workload}" has no replicas.\n`);
      await Promise.all(replicas.map((c) =>
        api.logs({ container: c.id, follow: Boolean(opts.follow), tail, sinceUnixMs }, (l) => writePrefixedLogLine(ctx, l, Boolean(opts.timestamps), c.name))));
      return 0;
    });
  }
  return withController(ctx, async (api) => {
    // The controller resolves names and unambiguous id prefixes itself.
    await api.logs({ container, follow: Boolean(opts.follow), tail, sinceUnixMs }, (l) => writeLogLine(ctx, l, Boolean(opts.timestamps)));
    return 0;
  });
}

export async function runRm(ctx: CliContext, opts: { force?: boolean }, names: readonly string[]): Promise<number> {
  const { withController } = await import('./client.js');
  return withController(ctx, async (api) => {
    const res = await api.removeContainers({ containers: [...names], force: Boolean(opts.force) });
    for (const n of res.removed) ctx.out(n);
    return 0;
  });
}

export async function runStop(ctx: CliContext, opts: { time?: string }, names: readonly string[]): Promise<number> {
  const graceSeconds = opts.time === undefined ? 0 : parseGrace(opts.time);
  const { withController } = await import('./client.js');
  return withController(ctx, async (api) => {
    const res = await api.stopContainers({ containers: [...names], graceSeconds });
    for (const n of res.stopped) ctx.out(n);
    return 0;
  });
}

function parseGrace(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1 || n > 3600) {
    throw new UsageError(`--time: expected whole seconds from 1 to 3600 before SIGKILL, got "${raw}"`);
  }
  return n;
}

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export const containerVerbs: Verb = (program, run) => {
  program
    .command('ps')
    .summary('list containers (docker ps)')
    .description('List containers on every node, newest first: running ones, or all with -a. Replicas of workloads and one-off containers (berth run) both show.')
    .option('-a, --all', 'include exited containers')
    .option('-q, --quiet', 'print only container ids')
    .option('-f, --filter <key=value>', 'status=running|exited|created|pending|unknown, name=SUBSTRING, label=k=v or node=NAME (repeatable; all must match)', collect)
    .option('--format <format>', '"table" (default) or "json"')
    .addHelpText('after', `
Examples:
  berth ps
  berth ps -a
  berth ps -q --filter status=exited
  berth ps --filter label=app=web --filter node=node-1
  berth ps --format json`)
    .action(run((ctx, _cmd: Command, opts: PsOptions) => runPs(ctx, opts)));

  const get = program.commands.find((c) => c.name() === 'get');
  if (get) {
    get
      .command('replicas')
      .aliases(['replica', 'containers', 'container'])
      .summary('list containers (replicas and one-off), or show one')
      .description('List every container the controller knows, including exited ones, sorted by name; or show the one named (name or id prefix).')
      .argument('[name]', 'show only this container')
      .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'wide', 'json', 'yaml']).default('table'))
      .option('-l, --selector <k=v,...>', 'only replicas of workloads whose labels match all pairs, and containers with those labels (repeatable)', collect)
      .addHelpText('after', `
Examples:
  berth get replicas
  berth get replicas -l app=web -o wide
  berth get container web-0 -o json`)
      .action(run((ctx, _cmd: Command, opts: { output?: string; selector?: string[] }, args) => runGetReplicas(ctx, opts, args[0] as string | undefined)));
  }

  program
    .command('logs')
    .summary('print the logs of a container')
    .description('Print what a container wrote to stdout and stderr (to this program\'s stdout and stderr). The container is named by its name or an unambiguous id prefix; "workload/NAME" prints the logs of every replica of a workload, each line prefixed with "[replica-name] ".')
    .argument('<container>', 'container name or id prefix, or workload/NAME')
    .option('-f, --follow', 'keep printing new lines until the container exits (or Ctrl-C)')
    .option('-n, --tail <n>', 'only the last N lines ("all" for every line)')
    .option('--since <when>', 'only lines since a duration ago ("10m", "2h") or a time ("2026-01-02T15:04:05Z")')
    .option('-t, --timestamps', 'prefix each line with its time (ISO 8601)')
    .addHelpText('after', `
Examples:
  berth logs web-0
  berth logs -f --tail 20 web-0
  berth logs --since 10m --timestamps 3f2a9c
  berth logs -f workload/web`)
    .action(run((ctx, _cmd: Command, opts: LogsOptions, args) => runLogs(ctx, opts, args[0] as string)));

  program
    .command('rm')
    .summary('remove containers')
    .description('Remove containers by name or id prefix, all in one call. A running container is refused unless --force, which stops it first.')
    .argument('<containers...>', 'container names or id prefixes')
    .option('-f, --force', 'stop running containers, then remove them')
    .addHelpText('after', `
Examples:
  berth rm old-job
  berth rm -f web-debug 3f2a9c`)
    .action(run((ctx, _cmd: Command, opts: { force?: boolean }, args) => runRm(ctx, opts, args[0] as string[])));

  program
    .command('stop')
    .summary('stop running containers')
    .description('Stop containers by name or id prefix: SIGTERM, then SIGKILL after the grace period (default 10 s). A stopped container stays listed by `ps -a` and is not restarted by its restart policy.')
    .argument('<containers...>', 'container names or id prefixes')
    .option('-t, --time <seconds>', 'seconds to wait after SIGTERM before SIGKILL (default 10)')
    .addHelpText('after', `
Examples:
  berth stop web-debug
  berth stop -t 2 3f2a9c old-job`)
    .action(run((ctx, _cmd: Command, opts: { time?: string }, args) => runStop(ctx, opts, args[0] as string[])));
};
