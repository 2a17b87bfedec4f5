/** `berth get workloads|nodes [NAME]` */
import { Option, type Command } from 'commander';
import type { Node, Workload } from '../proto/gen/berth/v1/types.js';
import { NotFoundError } from '../lib/errors.js';
import type { CliContext } from './context.js';
import { OUTPUT_FORMATS, formatAge, formatBytes, formatCpu, formatJson, formatLabels, formatTable, formatYaml, parseOutputFormat, parseSelector, type OutputFormat } from './output.js';
import type { Verb } from './verb.js';

export interface GetOptions {
  output?: string;
  selector?: string[];
}

async function print(ctx: CliContext, format: OutputFormat, value: unknown): Promise<void> {
  if (format === 'json') ctx.out(formatJson(value));
  else ctx.out(await formatYaml(value));
}

function ready(w: Workload): string {
  return `${w.status?.ready ?? 0}/${w.spec?.replicas ?? 0}`;
}

/** Table rows for workloads; `wide` adds running/pending counts, resources and labels. */
export function workloadTable(items: readonly Workload[], wide: boolean, nowMs = Date.now()): string {
  const headers = wide
    ? ['NAME', 'READY', 'RUNNING', 'PENDING', 'REVISION', 'IMAGE', 'CPU', 'MEMORY', 'LABELS', 'AGE']
    : ['NAME', 'READY', 'REVISION', 'IMAGE', 'AGE'];
  const rows = items.map((w) => {
    const name = w.metadata?.name ?? '';
    const age = formatAge(w.metadata?.createdUnixMs ?? 0, nowMs);
    const revision = String(w.status?.revision ?? 0);
    const image = w.spec?.image ?? '';
    if (!wide) return [name, ready(w), revision, image, age];
    const r = w.spec?.resources;
    return [
      name,
      ready(w),
      String(w.status?.running ?? 0),
      String(w.status?.pending ?? 0),
      revision,
      image,
      formatCpu(r?.cpuMillis ?? 0),
      r?.memoryBytes ? formatBytes(r.memoryBytes) : '-',
      formatLabels(w.metadata?.labels),
      age,
    ];
  });
  return formatTable(headers, rows);
}

/** "Ready", "NotReady" or "Unknown", plus ",Cordoned" when cordoned. */
export function nodeStatus(n: Node): string {
  const state = n.status?.state;
  const base = state === 1 ? 'Ready' : state === 2 ? 'NotReady' : 'Unknown';
  return n.spec?.cordoned ? `${base},Cordoned` : base;
}

/** "allocated/capacity" in one unit style: "500m/2", "64Mi/7.8Gi", "0/32768"; "-" for a capacity the agent did not report. */
export function allocationText(allocated: number, capacity: number, format: (n: number) => string): string {
  return `${allocated ? format(allocated) : '0'}/${capacity ? format(capacity) : '-'}`;
}

/**
 * Table rows for nodes: capacity and what placed replicas request of it
 * (CPU, MEMORY, PIDS as allocated/capacity) and the replica count; `wide`
 * adds kernel, os/arch, cgroup version, containers reported by the node,
 * the last heartbeat and the node's container subnet.
 */
export function nodeTable(items: readonly Node[], wide: boolean, nowMs = Date.now()): string {
  const headers = ['NAME', 'STATUS', 'ADDRESS', 'CPU', 'MEMORY', 'PIDS', 'REPLICAS', 'LABELS', 'AGE', 'VERSION'];
  if (wide) headers.push('KERNEL', 'OS/ARCH', 'CGROUP', 'CONTAINERS', 'LAST HEARTBEAT', 'SUBNET');
  const rows = items.map((n) => {
    const s = n.spec;
    const cap = s?.capacity;
    const alloc = n.status?.allocated;
    const row = [
      s?.name ?? '',
      nodeStatus(n),
      s?.address || '-',
      allocationText(alloc?.cpuMillis ?? 0, cap?.cpuMillis ?? 0, formatCpu),
      allocationText(alloc?.memoryBytes ?? 0, cap?.memoryBytes ?? 0, formatBytes),
      allocationText(alloc?.pids ?? 0, cap?.pids ?? 0, String),
      n.status?.replicas === undefined ? '-' : String(n.status.replicas),
      formatLabels(s?.labels),
      formatAge(n.status?.registeredUnixMs ?? 0, nowMs),
      s?.agentVersion || '-',
    ];
    if (wide) {
      const hb = n.status?.lastHeartbeatUnixMs ?? 0;
      row.push(s?.kernel || '-', s?.os ? `${s.os}/${s.arch}` : '-', s?.cgroupVersion || '-', String(n.status?.containers ?? 0), hb ? `${formatAge(hb, nowMs)} ago` : 'never', n.network?.subnet || '-');
    }
    return row;
  });
  return formatTable(headers, rows);
}

function byName<T>(name: (x: T) => string): (a: T, b: T) => number {
  return (a, b) => (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0);
}

export async function runGetWorkloads(ctx: CliContext, opts: GetOptions, name: string | undefined): Promise<number> {
  const format = parseOutputFormat(opts.output);
  const selector = parseSelector(opts.selector);
  const { withController } = await import('./client.js');
  const { Workload } = await import('../proto/gen/berth/v1/types.js');
  return withController(ctx, async (api) => {
    if (name !== undefined) {
      const w = await api.getWorkload(name);
      if (format === 'table' || format === 'wide') ctx.out(workloadTable([w], format === 'wide'));
      else await print(ctx, format, Workload.toJSON(w));
      return 0;
    }
    const res = await api.listWorkloads(selector);
    const items = [...res.workloads].sort(byName((w) => w.metadata?.name ?? ''));
    if (format === 'table' || format === 'wide') {
      if (items.length === 0) ctx.io.stderr.write('No workloads found.\n');
      else ctx.out(workloadTable(items, format === 'wide'));
    } else {
      await print(ctx, format, items.map((w) => Workload.toJSON(w)));
    }
    return 0;
  });
}

export async function runGetNodes(ctx: CliContext, opts: GetOptions, name: string | undefined): Promise<number> {
  const format = parseOutputFormat(opts.output);
  const selector = parseSelector(opts.selector);
  const { withController } = await import('./client.js');
  const { Node } = await import('../proto/gen/berth/v1/types.js');
  return withController(ctx, async (api) => {
    const res = await api.listNodes();
    let items = [...res.nodes].sort(byName((n) => n.spec?.name ?? ''));
    items = items.filter((n) => Object.entries(selector).every(([k, v]) => n.spec?.labels[k] === v));
    if (name !== undefined) {
      items = items.filter((n) => n.spec?.name === name);
      if (items.length === 0) throw new NotFoundError('node', name);
    }
    if (format === 'table' || format === 'wide') {
      if (items.length === 0) ctx.io.stderr.write('No nodes found.\n');
      else ctx.out(nodeTable(items, format === 'wide'));
    } else if (name !== undefined && items[0]) {
      await print(ctx, format, Node.toJSON(items[0]));
    } else {
      await print(ctx, format, items.map((n) => Node.toJSON(n)));
    }
    return 0;
  });
}

function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format').choices([...OUTPUT_FORMATS]).default('table');
}

export const getVerb: Verb = (program, run) => {
  const get = program
    .command('get')
    .summary('list workloads or nodes')
    .description('Show workloads or nodes as a table (default), a wide table, JSON or YAML.')
    .addHelpText('after', `
Examples:
  berth get workloads
  berth get workload web -o yaml
  berth get workloads -l app=web -o wide
  berth get nodes
  berth get nodes -o json`);

  get
    .command('workloads')
    .aliases(['workload', 'wl'])
    .summary('list workloads, or show one')
    .description('List workloads (sorted by name), or show the one named.')
    .argument('[name]', 'show only this workload')
    .addOption(outputOption())
    .option('-l, --selector <k=v,...>', 'only workloads whose labels match all pairs (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .addHelpText('after', `
Examples:
  berth get workloads
  berth get workloads -o wide
  berth get workload web -o json
  berth get workloads -l app=web,tier=front`)
    .action(run((ctx, _cmd: Command, opts: GetOptions, args) => runGetWorkloads(ctx, opts, args[0] as string | undefined)));

  get
    .command('nodes')
    .aliases(['node', 'no'])
    .summary('list nodes, or show one')
    .description('List the nodes that registered with the controller, whether they are Ready (heartbeating) or NotReady, their capacity and how much of it placed replicas request (CPU, MEMORY and PIDS as allocated/capacity), and how many replicas each runs.')
    .argument('[name]', 'show only this node')
    .addOption(outputOption())
    .option('-l, --selector <k=v,...>', 'only nodes whose labels match all pairs (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .addHelpText('after', `
Examples:
  berth get nodes
  berth get nodes -o wide
  berth get node node-1 -o yaml
  berth get nodes -l zone=a`)
    .action(run((ctx, _cmd: Command, opts: GetOptions, args) => runGetNodes(ctx, opts, args[0] as string | undefined)));
};
