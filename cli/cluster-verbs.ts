/** `berth events`, `berth node cordon|uncordon|drain NAME` and `berth describe workload NAME`. */
import type { Command } from 'commander';
import type { Container, Event, Workload, WorkloadRevision } from '../proto/gen/berth/v1/types.js';
import { UsageError, type CliContext } from './context.js';
import { formatAge, formatBytes, formatCpu, formatJson, formatLabels, formatTable } from './output.js';
import type { Verb } from './verb.js';

export function eventTable(items: readonly Event[], nowMs = Date.now()): string {
  const rows = items.map((e) => [
    e.unixMs ? `${formatAge(e.unixMs, nowMs)} ago` : '-',
    e.severity || 'normal',
    e.reason || '-',
    `${e.kind}/${e.name}`,
    e.node || '-',
    e.message.replace(/\s+/g, ' '),
  ]);
  return formatTable(['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'NODE', 'MESSAGE'], rows);
}

export function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const t = raw.trim();
  if (!/^\d+$/.test(t) || Number(t) < 1 || Number(t) > 1000) throw new UsageError(`--limit: expected a number from 1 to 1000, got "${raw}"`);
  return Number(t);
}

const KINDS = ['workload', 'container', 'node'];

/** How often `events -f` asks for new events (there is no event stream RPC). */
export const FOLLOW_POLL_MS = 1000;

function eventKey(e: Event): string {
  return `${e.unixMs}\u0000${e.kind}\u0000${e.name}\u0000${e.reason}\u0000${e.message}`;
}

export async function runEvents(ctx: CliContext, opts: { limit?: string; workload?: string; kind?: string; output?: string; follow?: boolean }): Promise<number> {
  const limit = parseLimit(opts.limit);
  if (opts.kind !== undefined && !KINDS.includes(opts.kind)) throw new UsageError(`--kind: expected one of ${KINDS.join(', ')}, got "${opts.kind}"`);
  if (opts.output !== undefined && opts.output !== 'table' && opts.output !== 'json') throw new UsageError(`-o, --output: expected "table" or "json", got "${opts.output}"`);
  const { withController } = await import('./client.js');
  const { Event: EventMsg } = await import('../proto/gen/berth/v1/types.js');
  return withController(ctx, async (api) => {
    const res = await api.listEvents({ limit, workload: opts.workload ?? '', kind: opts.kind ?? '' });
    if (opts.follow) {
      // Table without later re-alignment: each new event is one line in the same columns as the first batch.
      if (opts.output === 'json') throw new UsageError('-f, --follow: not available with -o json');
      let seen = new Set(res.events.map(eventKey));
      let last = res.events.reduce((m, e) => Math.max(m, e.unixMs), 0);
      ctx.out(eventTable(res.events).trimEnd());
      for (;;) {
        await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
        const more = await api.listEvents({ sinceUnixMs: last, workload: opts.workload ?? '', kind: opts.kind ?? '' });
        const fresh = more.events.filter((e) => !seen.has(eventKey(e)));
        if (fresh.length === 0) continue;
        const lines = eventTable(fresh).trimEnd().split('\n').slice(1);
        for (const l of lines) ctx.out(l);
        last = more.events.reduce((m, e) => Math.max(m, e.unixMs), last);
        seen = new Set(more.events.filter((e) => e.unixMs === last).map(eventKey));
      }
    }
    if (opts.output === 'json') ctx.out(formatJson(res.events.map((e) => EventMsg.toJSON(e))));
    else if (res.events.length === 0) ctx.io.stderr.write('No events found.\n');
    else ctx.out(eventTable(res.events));
    return 0;
  });
}

export async function runNodeOp(ctx: CliContext, op: 'cordon' | 'uncordon' | 'drain', name: string): Promise<number> {
  const { withController } = await import('./client.js');
  await withController(ctx, (api) => (op === 'drain' ? api.drainNode(name) : api.cordonNode(name, op === 'cordon')));
  ctx.out(`node/${name} ${op === 'drain' ? 'draining' : `${op}ed`}`);
  return 0;
}

export async function runNodeRemove(ctx: CliContext, name: string, force: boolean): Promise<number> {
  const { withController } = await import('./client.js');
  const res = await withController(ctx, (api) => api.removeNode(name, force));
  ctx.out(`node/${name} removed${res.releasedSubnet !== '' ? ` (subnet ${res.releasedSubnet} released)` : ''}`);
  return 0;
}

function line(key: string, value: string): string {
  return `${`${key}:`.padEnd(18)}${value}`;
}

/** The text of `berth describe workload`: spec, status, conditions, replicas per node, pending reasons, history, events. */
export function describeWorkload(w: Workload, revisions: readonly WorkloadRevision[], containers: readonly Container[], events: readonly Event[], nowMs = Date.now()): string {
  const out: string[] = [];
  const spec = w.spec;
  const st = w.status;
  out.push(line('Name', w.metadata?.name ?? ''));
  out.push(line('Labels', formatLabels(w.metadata?.labels)));
  out.push(line('Created', w.metadata?.createdUnixMs ? `${new Date(w.metadata.createdUnixMs).toISOString()} (${formatAge(w.metadata.createdUnixMs, nowMs)} ago)` : '<unknown>'));
  out.push(line('Image', spec?.image ?? ''));
  const cmd = [...(spec?.command ?? []), ...(spec?.args ?? [])];
  if (cmd.length > 0) out.push(line('Command', cmd.join(' ')));
  out.push(line('Replicas', `${st?.desired ?? spec?.replicas ?? 0} desired, ${st?.running ?? 0} running, ${st?.ready ?? 0} ready, ${st?.pending ?? 0} pending`));
  out.push(line('Revision', String(st?.revision ?? 0)));
  const r = spec?.resources;
  out.push(line('Resources', `cpu ${formatCpu(r?.cpuMillis ?? 0)}, memory ${r?.memoryBytes ? formatBytes(r.memoryBytes) : '-'}, pids ${r?.pids || '-'}`));
  out.push(line('Restart', spec?.restart?.policy || 'always'));
  out.push('', 'Conditions:');
  const conds = st?.conditions ?? [];
  if (conds.length === 0) out.push('  <none>');
  else out.push(indent(formatTable(['TYPE', 'STATUS', 'REASON', 'MESSAGE', 'SINCE'], conds.map((c) => [c.type, c.status ? 'True' : 'False', c.reason || '-', c.message || '-', c.sinceUnixMs ? `${formatAge(c.sinceUnixMs, nowMs)} ago` : '-']))));
  out.push('', 'Replicas per node:');
  const live = containers.filter((c) => c.status?.state !== 5);
  const perNode = new Map<string, { running: number; other: number }>();
  for (const c of live) {
    const n = c.node || '<unscheduled>';
    const e = perNode.get(n) ?? { running: 0, other: 0 };
    if (c.status?.state === 3) e.running++;
    else e.other++;
    perNode.set(n, e);
  }
  if (perNode.size === 0) out.push('  <none>');
  else out.push(indent(formatTable(['NODE', 'RUNNING', 'OTHER'], [...perNode.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, e]) => [n, String(e.running), String(e.other)]))));
  const pending = live.filter((c) => c.status?.state === 1 || c.status?.state === 2);
  if (pending.length > 0) {
    out.push('', 'Pending:');
    for (const c of pending) out.push(`  ${c.name}: ${[c.status?.reason, c.status?.message].filter(Boolean).join(': ') || 'waiting'}`);
  }
  out.push('', 'History:');
  if (revisions.length === 0) out.push('  <none>');
  else out.push(indent(formatTable(['REVISION', 'IMAGE', 'REPLICAS', 'CAUSE', 'AGE'], revisions.map((v) => [String(v.revision), v.spec?.image ?? '', String(v.spec?.replicas ?? 0), v.cause || '-', formatAge(v.createdUnixMs, nowMs)]))));
  out.push('', 'Events:');
  if (events.length === 0) out.push('  <none>');
  else out.push(indent(eventTable(events, nowMs)));
  return out.join('\n') + '\n';
}

function indent(text: string): string {
  return text.trimEnd().split('\n').map((l) => `  ${l}`).join('\n');
}

export async function runDescribeWorkload(ctx: CliContext, name: string): Promise<number> {
  const { withController } = await import('./client.js');
  return withController(ctx, async (api) => {
    const w = await api.getWorkload(name);
    const [history, containers, events] = await Promise.all([
      api.history(name),
      api.listContainers({ all: true, workload: name }),
      api.listEvents({ workload: name, limit: 20 }),
    ]);
    ctx.out(describeWorkload(w, history.revisions, containers.containers, events.events));
    return 0;
  });
}

export const clusterVerbs: Verb = (program, run) => {
  program
    .command('events')
    .summary('list recent events')
    .description('List recent events (the controller keeps the last 1000), oldest first.')
    .option('--limit <n>', 'only the newest N events (1 to 1000)')
    .option('-f, --follow', 'keep printing new events (asks the controller every second) until Ctrl-C')
    .option('--workload <name>', 'only events about this workload and its containers')
    .option('--kind <kind>', 'only events of this kind: workload, container or node')
    .option('-o, --output <format>', '"table" (default) or "json"')
    .addHelpText('after', `
Examples:
  berth events
  berth events --limit 20
  berth events -f
  berth events --workload web --kind container`)
    .action(run((ctx, _cmd: Command, opts: { limit?: string; workload?: string; kind?: string; output?: string; follow?: boolean }) => runEvents(ctx, opts)));

  const node = program
    .command('node')
    .summary('cordon, uncordon or drain a node')
    .description('Change a node\'s scheduling: cordon (no new replicas), uncordon (also ends a drain), drain (cordon and move its replicas away under each workload\'s update rules).')
    .addHelpText('after', `
Examples:
  berth node cordon node-1
  berth node drain node-1
  berth node uncordon node-1`);
  for (const [op, summary] of [
    ['cordon', 'stop placing new replicas on a node'],
    ['uncordon', 'allow new replicas on a node again (ends a drain)'],
    ['drain', 'cordon a node and move its replicas to other nodes'],
  ] as const) {
    node
      .command(op)
      .summary(summary)
      .description(`${summary[0]?.toUpperCase()}${summary.slice(1)}.`)
      .argument('<name>', 'node name')
      .addHelpText('after', `
Example:
  berth node ${op} node-1`)
      .action(run((ctx, _cmd: Command, _opts: unknown, args) => runNodeOp(ctx, op, args[0] as string)));
  }
  node
    .command('rm')
    .summary('remove a node record and release its container subnet')
    .description('Remove a node that left the cluster: its record is deleted and its container subnet released. A Ready node (its agent still heartbeats) is refused unless --force.')
    .argument('<name>', 'node name')
    .option('-f, --force', 'remove it even while it is Ready')
    .addHelpText('after', `
Example:
  berth node rm node-3`)
    .action(run((ctx, _cmd: Command, opts: { force?: boolean }, args) => runNodeRemove(ctx, args[0] as string, Boolean(opts.force))));

  const describe = program
    .command('describe')
    .summary('show details of a workload')
    .description('Show everything about one object in a form for people.');
  describe
    .command('workload')
    .aliases(['workloads', 'wl'])
    .summary('spec, status, conditions, replicas per node, pending reasons, history and events of a workload')
    .argument('<name>', 'workload name')
    .addHelpText('after', `
Example:
  berth describe workload web`)
    .action(run((ctx, _cmd: Command, _opts: unknown, args) => runDescribeWorkload(ctx, args[0] as string)));
};
