/**
 * `berth pull IMAGE [--node N]` and `berth images [--node N] [-o ...]`.
 *
 * pull streams per-layer progress from every node that pulls: on a terminal
 * one bar per node and layer (like `docker pull`), otherwise one plain line
 * whenever a layer changes phase, so logs stay readable. The exit code is 1
 * when any node failed.
 */
import { Option, type Command } from 'commander';
import { BerthError } from '../lib/errors.js';
import type { ImageListResponse, ImageServiceClient } from '../proto/gen/berth/v1/controller.js';
import { LayerPhase, type LayerProgress, type PullProgress } from '../proto/gen/berth/v1/types.js';
import type { CliContext } from './context.js';
import { formatAge, formatBytes, formatJson, formatTable, formatYaml, parseOutputFormat } from './output.js';
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

async function imageClient(ctx: CliContext): Promise<ImageServiceClient> {
  const grpc = await import('@grpc/grpc-js');
  const gen = await import('../proto/gen/berth/v1/controller.js');
  return new gen.ImageServiceClient(ctx.controller, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0 });
}

/** Renders progress: bars on a terminal, phase-change lines otherwise. */
interface ProgressView {
  update(p: PullProgress): void;
  stop(): void;
}

function lineView(ctx: CliContext, multiNode: boolean): ProgressView {
  const seen = new Map<string, LayerPhase>();
  return {
    update(p) {
      const prefix = multiNode ? `${p.node}: ` : '';
      for (const l of p.layers) {
        const key = `${p.node} ${l.digest}`;
        if (seen.get(key) === l.phase) continue;
        seen.set(key, l.phase);
        const size = l.totalBytes > 0 && l.phase === LayerPhase.LAYER_PHASE_DOWNLOADING ? ` ${formatBytes(l.totalBytes)}` : '';
        ctx.out(`${prefix}${shortDigest(l.digest)}: ${PHASE_TEXT[l.phase] ?? 'Unknown'}${size}`);
      }
    },
    stop() {},
  };
}

async function barView(ctx: CliContext, multiNode: boolean): Promise<ProgressView> {
  const { MultiBar, Presets } = (await import('cli-progress')).default;
  const bars = new MultiBar({
    stream: ctx.io.stdout as NodeJS.WriteStream,
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
  const client = await imageClient(ctx);
  const { cliError } = await import('./client.js');
  const { Metadata } = await import('@grpc/grpc-js');
  try {
    return await new Promise<ImageListResponse>((resolve, reject) => {
      client.list({ node: node ?? '' }, new Metadata(), { deadline: Date.now() + ctx.timeoutMs }, (err, r) => (err ? reject(cliError(err, ctx)) : resolve(r)));
    });
  } finally {
    client.close();
  }
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

export const imageVerbs: Verb = (program: Command, run) => {
  program
    .command('pull')
    .summary('pull an image on every Ready node (or one node), with progress')
    .description('Pull an image from its registry onto the nodes: every Ready node by default, or the one named with --node. A short name such as "busybox" resolves against the cluster\'s default registry. Shows one progress bar per layer on a terminal, phase lines otherwise; exits 1 when any node failed.')
    .argument('<image>', 'image reference, e.g. busybox or registry.example.com/team/web:1.0')
    .option('--node <name>', 'pull on this node only')
    .addHelpText('after', `
Examples:
  berth pull busybox
  berth pull 127.0.0.1:25000/whalesay:latest --node node-1`)
    .action(run<{ node?: string }>(async (ctx, _cmd, opts, args) => runPull(ctx, String(args[0]), opts.node)));

  program
    .command('images')
    .summary('list the images on the nodes')
    .description('List the images on every Ready node (or one node): one row per image and node.')
    .option('--node <name>', 'list this node only')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addHelpText('after', `
Examples:
  berth images
  berth images --node node-1 -o json`)
    .action(run<{ node?: string; output?: string }>(async (ctx, _cmd, opts) => runImages(ctx, opts.node, opts.output)));
};

