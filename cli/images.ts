/**
 * `berth pull IMAGE [--node N]`, `berth images [--node N] [-o ...]`,
 * `berth rmi [-f] IMAGE... [--node N]`, `berth image prune [-a] [-f]`,
 * `berth search TERM [--registry HOST] [--limit N]`, and the Docker-style
 * group `berth image ls|pull|rm|prune`.
 *
 * pull streams per-layer progress from every node that pulls: on a terminal
 * one bar per node and layer (like `docker pull`), otherwise one plain line
 * whenever a layer changes phase, so logs stay readable. The exit code is 1
 * when any node failed.
 */
import { Option, type Command } from 'commander';
import { BerthError } from '../lib/errors.js';
import type { ImageListResponse, ImagePruneResponse, ImageRemoveResponse, ImageSearchResponse, ImageServiceService } from '../proto/gen/berth/v1/controller.js';
import { LayerPhase, type ImageRemoval, type LayerProgress, type PullProgress } from '../proto/gen/berth/v1/types.js';
import { confirm } from './confirm.js';
import { UsageError, type CliContext } from './context.js';
import { formatAge, formatBytes, formatJson, formatTable, formatYaml, parseOutputFormat } from './output.js';
import type { RpcClient } from './rpc.js';
import type { Verb } from './verb.js';

const PHASE_TEXT: Record<number, string> = {
  [LayerPhase.LAYER_PHASE_WAITING]: 'Waiting',
  [LayerPhase.LAYER_PHASE_DOWNLOADING]: 'Downloading',
  [LayerPhase.LAYER_PHASE_VERIFYING]: 'Verifying',
  [LayerPhase.LAYER_PHASE_EXTRACTING]: 'Extracting',
  [LayerPhase.LAYER_PHASE_DONE]: 'Pull complete',
  [LayerPhase.LAYER_PHASE_ALREADY_EXISTS]: 'Already exists',
};

function shortDigest(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

async function imageClient(ctx: CliContext): Promise<RpcClient<typeof ImageServiceService>> {
  const grpc = await import('./rpc.js');
  const gen = await import('../proto/gen/berth/v1/controller.js');
  return grpc.makeClient(gen.ImageServiceService, ctx.controller, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0 });
}

/** Renders progress: bars on a terminal, phase-change lines otherwise. */
export interface ProgressView {
  update(p: PullProgress): void;
  stop(): void;
}

/** Where a progress view writes: stdout (`berth pull`) or stderr (`berth run`, whose stdout is the container's). */
type ViewStream = 'stdout' | 'stderr';

/** The progress view `berth pull` uses (bars on a terminal, lines otherwise), on the given stream. */
export async function pullProgressView(ctx: CliContext, opts: { stream: ViewStream; multiNode: boolean }): Promise<ProgressView> {
  const out = opts.stream === 'stderr' ? ctx.io.stderr : ctx.io.stdout;
  return (out as NodeJS.WriteStream).isTTY ? barView(ctx, opts.multiNode, opts.stream) : lineView(ctx, opts.multiNode, opts.stream);
}

function lineView(ctx: CliContext, multiNode: boolean, stream: ViewStream = 'stdout'): ProgressView {
  const seen = new Map<string, LayerPhase>();
  const write = (line: string): void => {
    if (stream === 'stdout') ctx.out(line);
    else ctx.io.stderr.write(`${line}\n`);
  };
  return {
    update(p) {
      const prefix = multiNode ? `${p.node}: ` : '';
      for (const l of p.layers) {
        const key = `${p.node} ${l.digest}`;
        if (seen.get(key) === l.phase) continue;
        seen.set(key, l.phase);
        const size = l.totalBytes > 0 && l.phase === LayerPhase.LAYER_PHASE_DOWNLOADING ? ` ${formatBytes(l.totalBytes)}` : '';
        write(`${prefix}${shortDigest(l.digest)}: ${PHASE_TEXT[l.phase] ?? 'Unknown'}${size}`);
      }
    },
    stop() {},
  };
}

async function barView(ctx: CliContext, multiNode: boolean, stream: ViewStream = 'stdout'): Promise<ProgressView> {
  const { MultiBar, Presets } = (await import('cli-progress')).default;
  const bars = new MultiBar({
    stream: (stream === 'stderr' ? ctx.io.stderr : ctx.io.stdout) as NodeJS.WriteStream,
    format: '{label} [{bar}] {phase} {done}/{total}',
    hideCursor: true,
    clearOnComplete: false,
    barsize: 30,
  }, Presets.shades_classic);
  const byLayer = new Map<string, ReturnType<typeof bars.create>>();
  const payload = (p: PullProgress, l: LayerProgress) => ({
    label: `${multiNode ? `${p.node}: ` : ''}${shortDigest(l.digest)}`,
    phase: (PHASE_TEXT[l.phase] ?? '').padEnd(14),
    done: formatBytes(l.doneBytes),
    total: l.totalBytes > 0 ? formatBytes(l.totalBytes) : '?',
  });
  return {
    update(p) {
      for (const l of p.layers) {
        const key = `${p.node} ${l.digest}`;
        const total = Math.max(1, l.totalBytes);
        const done = l.phase === LayerPhase.LAYER_PHASE_DONE || l.phase === LayerPhase.LAYER_PHASE_ALREADY_EXISTS ? total : Math.min(l.doneBytes, total);
        const bar = byLayer.get(key);
        if (bar) {
          bar.setTotal(total);
          bar.update(done, payload(p, l));
        } else {
          byLayer.set(key, bars.create(total, done, payload(p, l)));
        }
      }
    },
    stop() {
      bars.stop();
    },
  };
}

export async function runPull(ctx: CliContext, reference: string, node: string | undefined): Promise<number> {
  const client = await imageClient(ctx);
  const { cliError } = await import('./client.js');
  const tty = Boolean((ctx.io.stdout as NodeJS.WriteStream).isTTY);
  const view = tty ? await barView(ctx, !node) : lineView(ctx, !node);
  const finals: PullProgress[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = client.pull({ reference, node: node ?? '' });
      const onSignal = (): void => stream.cancel();
      process.once('SIGINT', onSignal);
      stream.on('data', (p: PullProgress) => {
        view.update(p);
        if (p.finished) finals.push(p);
      });
      stream.on('error', (err) => {
        process.removeListener('SIGINT', onSignal);
        reject(cliError(err, ctx));
      });
      stream.on('end', () => {
        process.removeListener('SIGINT', onSignal);
        resolve();
      });
    });
  } finally {
    view.stop();
    client.close();
  }
  let failed = 0;
  for (const f of finals.sort((a, b) => a.node.localeCompare(b.node))) {
    if (f.error) {
      failed++;
      ctx.io.stderr.write(`error: ${f.node}: failed to pull "${f.reference}": ${f.error}\n`);
    } else {
      ctx.out(`${f.node}: ${f.reference}: Digest: ${f.digest}`);
    }
  }
  if (finals.length === 0) throw new BerthError('internal', `failed to pull "${reference}": no node reported a result`);
  return failed > 0 ? 1 : 0;
}

/** ImageService.List on one node, or on every Ready node when `node` is empty. */
export async function listImages(ctx: CliContext, node: string | undefined): Promise<ImageListResponse> {
  const { unaryOnce } = await import('./client.js');
  return unaryOnce<ImageListResponse>(ctx, await imageClient(ctx), 'list', { node: node ?? '' });
}

export async function runImages(ctx: CliContext, node: string | undefined, output: string | undefined): Promise<number> {
  const format = parseOutputFormat(output, ['table', 'json', 'yaml']);
  const res = await listImages(ctx, node);
  if (format === 'json') ctx.out(formatJson(res.images));
  else if (format === 'yaml') ctx.out(await formatYaml(res.images));
  else {
    const rows = res.images.map((i) => [i.repository, i.tag || '<none>', shortDigest(i.digest), formatBytes(i.sizeBytes), i.createdUnixMs > 0 ? `${formatAge(i.createdUnixMs)} ago` : '-', i.node]);
    ctx.out(formatTable(['REPOSITORY', 'TAG', 'DIGEST', 'SIZE', 'CREATED', 'NODE'], rows).replace(/\n$/, ''));
  }
  for (const u of res.unreachable) ctx.io.stderr.write(`warning: could not list images of ${u}\n`);
  return 0;
}

/** One unary ImageService call with the CLI's deadline (`deadlineMs` overrides it for slow calls). */
async function callImages<Res>(ctx: CliContext, method: 'remove' | 'prune' | 'search', req: object, deadlineMs = ctx.timeoutMs): Promise<Res> {
  const { unaryOnce } = await import('./client.js');
  return unaryOnce<Res>(ctx, await imageClient(ctx), method, req, deadlineMs);
}

/** Prints "error: NODE: REASON" for each node that failed; the exit code: 1 when any did, else 0. */
function nodeErrors(ctx: CliContext, nodes: readonly { node: string; error: string }[]): number {
  let failed = 0;
  for (const r of nodes) {
    if (!r.error) continue;
    failed++;
    ctx.io.stderr.write(`error: ${r.node}: ${r.error}\n`);
  }
  return failed > 0 ? 1 : 0;
}

/** Removal and prune deadlines: deleting a large image's files can take a while on a busy disk. */
const DELETE_DEADLINE_MS = 10 * 60_000;

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function removalLines(r: ImageRemoval, verb: string): string[] {
  const lines = r.images.map((i) => `${r.node}: ${verb}: ${i.reference} (${shortDigest(i.digest)})`);
  lines.push(`${r.node}: deleted ${plural(r.blobsDeleted, 'blob')} and ${plural(r.snapshotsDeleted, 'layer snapshot')}, freed ${formatBytes(r.bytesFreed)}`);
  return lines;
}

export async function runRemove(ctx: CliContext, references: string[], opts: { node?: string; force?: boolean; output?: string }): Promise<number> {
  const format = parseOutputFormat(opts.output, ['table', 'json', 'yaml']);
  if (references.length === 0) throw new UsageError('rmi: expected at least one image');
  const res = await callImages<ImageRemoveResponse>(ctx, 'remove', { references, node: opts.node ?? '', force: Boolean(opts.force) }, DELETE_DEADLINE_MS);
  if (format === 'json') ctx.out(formatJson(res.nodes));
  else if (format === 'yaml') ctx.out(await formatYaml(res.nodes));
  else for (const r of res.nodes) if (!r.error) for (const l of removalLines(r, 'Untagged')) ctx.out(l);
  return nodeErrors(ctx, res.nodes);
}

export async function runPrune(ctx: CliContext, opts: { all?: boolean; force?: boolean; node?: string; output?: string }): Promise<number> {
  const format = parseOutputFormat(opts.output, ['table', 'json', 'yaml']);
  if (!opts.force) {
    const what = opts.all
      ? 'This removes every image no container uses, and every layer and blob no image uses'
      : 'This removes every layer and blob no image or container uses (dangling)';
    if (!(await confirm(ctx, `WARNING! ${what}, on ${opts.node ? `node "${opts.node}"` : 'every Ready node'}. Are you sure you want to continue?`))) {
      throw new BerthError('cancelled', 'prune not confirmed; nothing was removed (answer "y", or pass -f to skip the question)');
    }
  }
  const res = await callImages<ImagePruneResponse>(ctx, 'prune', { all: Boolean(opts.all), node: opts.node ?? '' }, DELETE_DEADLINE_MS);
  const total = res.nodes.reduce((n, r) => n + r.bytesFreed, 0);
  if (format === 'json') ctx.out(formatJson({ nodes: res.nodes, bytesFreed: total }));
  else if (format === 'yaml') ctx.out(await formatYaml({ nodes: res.nodes, bytesFreed: total }));
  else {
    for (const r of res.nodes) if (!r.error) for (const l of removalLines(r, 'Deleted image')) ctx.out(l);
    ctx.out(`Total reclaimed space: ${formatBytes(total)}`);
  }
  return nodeErrors(ctx, res.nodes);
}

export function parseSearchLimit(raw: string | undefined): number {
  if (raw === undefined) return 25;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isInteger(n) || n < 1 || n > 100) throw new UsageError(`--limit: expected a whole number from 1 to 100, got "${raw}"`);
  return n;
}

export async function runSearch(ctx: CliContext, term: string, opts: { registry?: string; limit?: string; output?: string }): Promise<number> {
  const format = parseOutputFormat(opts.output, ['table', 'json', 'yaml']);
  const limit = parseSearchLimit(opts.limit);
  const res = await callImages<ImageSearchResponse>(ctx, 'search', { term, registry: opts.registry ?? '', limit });
  if (format === 'json') ctx.out(formatJson(res.results));
  else if (format === 'yaml') ctx.out(await formatYaml(res.results));
  else if (res.results.length === 0) ctx.io.stderr.write(`no repository matches "${term}"\n`);
  else {
    const rows = res.results.map((r) => [`${r.registry}/${r.repository}`, r.tags.length > 8 ? `${r.tags.slice(0, 8).join(', ')}, ... (${r.tags.length})` : r.tags.join(', ') || '<none>']);
    ctx.out(formatTable(['NAME', 'TAGS'], rows).replace(/\n$/, ''));
  }
  return 0;
}

const outputOption = (): Option => new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table');

type PullOpts = { node?: string };
type ListOpts = { node?: string; output?: string };
type RemoveOpts = { node?: string; force?: boolean; output?: string };
type PruneOpts = { all?: boolean; force?: boolean; node?: string; output?: string };

function pullCommand(cmd: Command, run: Parameters<Verb>[1], name: string): void {
  cmd
    .summary('pull an image on every Ready node (or one node), with progress')
    .description('Pull an image from its registry onto the nodes: every Ready node by default, or the one named with --node. A short name such as "busybox" resolves against the cluster\'s default registry. Shows one progress bar per layer on a terminal, phase lines otherwise; exits 1 when any node failed.')
    .argument('<image>', 'image reference, e.g. busybox or registry.example.com/team/web:1.0')
    .option('--node <name>', 'pull on this node only')
    .addHelpText('after', `
Examples:
  berth ${name} busybox
  berth ${name} 127.0.0.1:25000/whalesay:latest --node node-1`)
    .action(run<PullOpts>(async (ctx, _cmd, opts, args) => runPull(ctx, String(args[0]), opts.node)));
}

function listCommand(cmd: Command, run: Parameters<Verb>[1], name: string): void {
  cmd
    .summary('list the images on the nodes')
    .description('List the images on every Ready node (or one node): one row per image and node.')
    .option('--node <name>', 'list this node only')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  berth ${name}
  berth ${name} --node node-1 -o json`)
    .action(run<ListOpts>(async (ctx, _cmd, opts) => runImages(ctx, opts.node, opts.output)));
}

function removeCommand(cmd: Command, run: Parameters<Verb>[1], name: string): void {
  cmd
    .summary('remove images from the nodes')
    .description('Remove images from every Ready node that has them, or from the node named with --node, and delete the layers and blobs only they used (layers another image or a container uses stay). An image is named by reference (short names resolve against the default registry) or by digest: full, or the 12-digit prefix `berth images` shows. Every node is checked first: when an image is in use by a container (without -f), or is on no node, nothing is removed anywhere. Prints what each node removed and the space freed.')
    .argument('<image...>', 'image references or digests')
    .option('-f, --force', 'remove even while containers use the image (their layers stay until the containers are removed)')
    .option('--node <name>', 'remove from this node only')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  berth ${name} busybox
  berth ${name} -f 127.0.0.1:5000/team/web:1.0 --node node-1
  berth ${name} 3f2a9c1d0b4e -o json`)
    .action(run<RemoveOpts>(async (ctx, _cmd, opts, args) => runRemove(ctx, (args[0] as string[] | undefined) ?? [], opts)));
}

function pruneCommand(cmd: Command, run: Parameters<Verb>[1], name: string): void {
  cmd
    .summary('delete unused layers and blobs (with -a, unused images too)')
    .description('Delete, on every Ready node (or one node), the layers and blobs that no image and no container uses: what is left of replaced tags and failed pulls. With -a, first remove every image that no container uses. Asks for confirmation unless -f. Prints what each node deleted and the total space reclaimed.')
    .option('-a, --all', 'also remove every image no container uses')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--node <name>', 'prune this node only')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  berth ${name} -f
  berth ${name} -a -f --node node-1`)
    .action(run<PruneOpts>(async (ctx, _cmd, opts) => runPrune(ctx, opts)));
}

export const imageVerbs: Verb = (program: Command, run) => {
  pullCommand(program.command('pull'), run, 'pull');
  listCommand(program.command('images'), run, 'images');
  removeCommand(program.command('rmi'), run, 'rmi');

  program
    .command('search')
    .summary('search a registry\'s repositories and their tags')
    .description('List the repositories in a registry\'s catalog (GET /v2/_catalog) whose name contains TERM, with their tags. The registry is the cluster\'s default registry unless --registry is given; one Ready node\'s agent asks it (with that node\'s registry credentials). Registries that do not publish their catalog (most public ones) are reported as such.')
    .argument('<term>', 'text the repository name must contain ("" for all)')
    .option('--registry <host>', 'registry to search, e.g. registry.example.com or 127.0.0.1:5000')
    .option('--limit <n>', 'at most this many repositories (1-100)', '25')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  berth search busybox
  berth search team/ --registry 127.0.0.1:5000 --limit 10 -o json`)
    .action(run<{ registry?: string; limit?: string; output?: string }>(async (ctx, _cmd, opts, args) => runSearch(ctx, String(args[0]), opts)));

  const image = program
    .command('image')
    .summary('manage images (ls, pull, rm, prune)')
    .description('Docker-style image commands: "berth image ls" is "berth images", "berth image pull" is "berth pull", "berth image rm" is "berth rmi"; "berth image prune" deletes unused layers and blobs.')
    .addHelpText('after', `
Examples:
  berth image ls
  berth image pull busybox
  berth image rm busybox
  berth image prune -a -f`);
  listCommand(image.command('ls').alias('list'), run, 'image ls');
  pullCommand(image.command('pull'), run, 'image pull');
  removeCommand(image.command('rm').alias('rmi'), run, 'image rm');
  pruneCommand(image.command('prune'), run, 'image prune');
};
