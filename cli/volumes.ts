/**
 * `berth volume create|ls|inspect|rm|prune`: named volumes, Docker-style.
 * A volume lives on one node (under that agent's root); containers mount it
 * with `berth run -v NAME:/path`. Output: a table like `docker volume ls`
 * (DRIVER is "local", plus the node), `-q` for names only, `--format json`
 * for scripts; inspect prints a JSON list like `docker volume inspect`.
 */
import type { Command } from 'commander';
import { BerthError } from '../lib/errors.js';
import type { ListVolumesResponse, RemoveVolumesResponse, Volume, VolumeServiceService } from '../proto/gen/berth/v1/volumes.js';
import { confirm } from './confirm.js';
import { UsageError, type CliContext } from './context.js';
import { formatAge, formatJson, formatTable, parseSelector } from './output.js';
import type { RpcClient } from './rpc.js';
import type { Verb } from './verb.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

async function volumeClient(ctx: CliContext): Promise<RpcClient<typeof VolumeServiceService>> {
  const grpc = await import('./rpc.js');
  const gen = await import('../proto/gen/berth/v1/volumes.js');
  return grpc.makeClient(gen.VolumeServiceService, ctx.controller, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0 });
}

/** Removing a volume deletes its files: allow more than the usual deadline. */
const DELETE_DEADLINE_MS = 10 * 60_000;

type Method = 'create' | 'list' | 'inspect' | 'remove' | 'prune';

/** One unary VolumeService call with the CLI's deadline. */
async function callVolumes<Res>(ctx: CliContext, method: Method, req: object, deadlineMs = ctx.timeoutMs): Promise<Res> {
  const { unaryOnce } = await import('./client.js');
  return unaryOnce<Res>(ctx, await volumeClient(ctx), method, req, deadlineMs);
}

/** A volume as `inspect` and `--format json` print it (Docker's field names where they exist). */
export function volumeJson(v: Volume): Record<string, unknown> {
  return {
    Name: v.name,
    Driver: 'local',
    Node: v.node,
    Mountpoint: v.mountpoint,
    CreatedAt: v.createdUnixMs > 0 ? new Date(v.createdUnixMs).toISOString() : '',
    Labels: v.labels,
    Scope: 'local',
    InUseBy: v.inUseBy,
  };
}

/** The `volume ls` table. */
export function volumeTable(volumes: readonly Volume[], nowMs = Date.now()): string {
  const rows = volumes.map((v) => [
    'local', v.name, v.node, v.createdUnixMs > 0 ? `${formatAge(v.createdUnixMs, nowMs)} ago` : '-', v.inUseBy.length > 0 ? v.inUseBy.join(',') : '-',
  ]);
  return formatTable(['DRIVER', 'VOLUME NAME', 'NODE', 'CREATED', 'USED BY'], rows).replace(/\n$/, '');
}

function checkFormat(format: string | undefined): 'table' | 'json' {
  if (format === undefined || format === 'table') return 'table';
  if (format === 'json') return 'json';
  throw new UsageError(`--format: expected "table" or "json", got "${format}"`);
}

async function checkName(name: string): Promise<void> {
  const { volumeNameProblem } = await import('../lib/volumes.js');
  const p = volumeNameProblem(name);
  if (p) throw new UsageError(`NAME: ${p}`);
}

interface CreateOpts { node?: string; label?: string[] }
interface ListOpts { quiet?: boolean; format?: string; filter?: string[]; node?: string }
interface RemoveOpts { force?: boolean }
interface PruneOpts { force?: boolean; filter?: string[] }

export async function runVolumeCreate(ctx: CliContext, name: string, opts: CreateOpts): Promise<number> {
  await checkName(name);
  const labels = parseSelector(opts.label);
  const v = await callVolumes<Volume>(ctx, 'create', { name, node: opts.node ?? '', labels });
  ctx.out(v.name);
  return 0;
}

export async function runVolumeList(ctx: CliContext, opts: ListOpts): Promise<number> {
  const format = checkFormat(opts.format);
  const res = await callVolumes<ListVolumesResponse>(ctx, 'list', { selector: parseSelector(opts.filter), node: opts.node ?? '' });
  if (opts.quiet) {
    for (const v of res.volumes) ctx.out(v.name);
  } else if (format === 'json') {
    ctx.out(formatJson(res.volumes.map(volumeJson)).replace(/\n$/, ''));
  } else {
    ctx.out(volumeTable(res.volumes));
  }
  return 0;
}

export async function runVolumeInspect(ctx: CliContext, names: string[]): Promise<number> {
  if (names.length === 0) throw new UsageError('volume inspect: expected at least one volume name');
  for (const n of names) await checkName(n);
  const res = await callVolumes<ListVolumesResponse>(ctx, 'inspect', { names });
  ctx.out(formatJson(res.volumes.map(volumeJson)).replace(/\n$/, ''));
  return 0;
}

export async function runVolumeRemove(ctx: CliContext, names: string[], opts: RemoveOpts): Promise<number> {
  if (names.length === 0) throw new UsageError('volume rm: expected at least one volume name');
  for (const n of names) await checkName(n);
  const res = await callVolumes<RemoveVolumesResponse>(ctx, 'remove', { names, force: Boolean(opts.force) }, DELETE_DEADLINE_MS);
  for (const n of res.removed) ctx.out(n);
  return 0;
}

export async function runVolumePrune(ctx: CliContext, opts: PruneOpts): Promise<number> {
  const selector = parseSelector(opts.filter);
  if (!opts.force && !(await confirm(ctx, 'WARNING! This removes every volume no container uses, and its data. Are you sure you want to continue?'))) {
    throw new BerthError('cancelled', 'prune not confirmed; nothing was removed (answer "y", or pass -f to skip the question)');
  }
  const res = await callVolumes<RemoveVolumesResponse>(ctx, 'prune', { selector }, DELETE_DEADLINE_MS);
  if (res.removed.length > 0) {
    ctx.out('Deleted Volumes:');
    for (const n of res.removed) ctx.out(n);
    ctx.out('');
  }
  ctx.out(`Total volumes deleted: ${res.removed.length}`);
  return 0;
}

export const volumeVerbs: Verb = (program: Command, run) => {
  const volume = program
    .command('volume')
    .summary('manage named volumes (create, ls, inspect, rm, prune)')
    .description('Named volumes keep data that must outlive a container. A volume lives on one node, under that node\'s agent root; "berth run -v NAME:/path" mounts it (creating it on first use on the node the container runs on), and a container that mounts an existing volume always runs on the volume\'s node.')
    .addHelpText('after', `
Examples:
  berth volume create data
  berth volume create --node node-2 -l team=db pgdata
  berth volume ls
  berth volume inspect data
  berth volume rm data
  berth volume prune -f`);

  volume
    .command('create')
    .summary('create a volume')
    .description('Create a named volume on the node given with --node, or on a Ready, uncordoned node the scheduler picks. Prints the name.')
    .argument('<name>', 'volume name: 1-64 letters, digits, "_", "." and "-", starting with a letter or digit')
    .option('--node <name>', 'create it on this node')
    .option('-l, --label <k=v>', 'volume label (repeatable)', collect)
    .addHelpText('after', `
Examples:
  berth volume create data
  berth volume create --node node-2 -l team=db pgdata`)
    .action(run<CreateOpts>(async (ctx, _cmd, opts, args) => runVolumeCreate(ctx, String(args[0]), opts)));

  volume
    .command('ls')
    .alias('list')
    .summary('list volumes')
    .description('List volumes: driver, name, node, age and the containers that use them.')
    .option('-q, --quiet', 'print names only')
    .option('--format <format>', '"table" (default) or "json"')
    .option('-f, --filter <label=value>', 'only volumes with this label (repeatable)', collect)
    .option('--node <name>', 'only volumes on this node')
    .addHelpText('after', `
Examples:
  berth volume ls
  berth volume ls -q
  berth volume ls --format json --filter team=db`)
    .action(run<ListOpts>(async (ctx, _cmd, opts) => runVolumeList(ctx, opts)));

  volume
    .command('inspect')
    .summary('show volumes as JSON')
    .description('Print a JSON list with each named volume: name, node, mountpoint on that node, creation time, labels and the containers that use it.')
    .argument('<name...>', 'volume names')
    .addHelpText('after', `
Examples:
  berth volume inspect data
  berth volume inspect data pgdata`)
    .action(run(async (ctx, _cmd, _opts, args) => runVolumeInspect(ctx, (args[0] as string[] | undefined) ?? [])));

  volume
    .command('rm')
    .alias('remove')
    .summary('remove volumes and their data')
    .description('Remove named volumes and delete their data on their nodes. Every name is checked first: when one does not exist or a container uses it (running or stopped; remove the container first), nothing is removed. With -f, a volume whose node is gone or unreachable is forgotten anyway (its data stays on that node).')
    .argument('<name...>', 'volume names')
    .option('-f, --force', 'forget volumes whose node cannot be reached')
    .addHelpText('after', `
Examples:
  berth volume rm data
  berth volume rm -f data pgdata`)
    .action(run<RemoveOpts>(async (ctx, _cmd, opts, args) => runVolumeRemove(ctx, (args[0] as string[] | undefined) ?? [], opts)));

  volume
    .command('prune')
    .summary('remove every volume no container uses')
    .description('Remove every volume that no container uses, and its data. Asks for confirmation unless -f. Volumes on nodes that cannot be reached are skipped.')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--filter <label=value>', 'only volumes with this label (repeatable)', collect)
    .addHelpText('after', `
Examples:
  berth volume prune
  berth volume prune -f --filter team=db`)
    .action(run<PruneOpts>(async (ctx, _cmd, opts) => runVolumePrune(ctx, opts)));
};
