/** `berth apply -f FILE [-f FILE...] [--dry-run] [-o json]` */
import { Option, type Command } from 'commander';
import type { ApplyResult } from '../proto/gen/berth/v1/controller.js';
import type { CliContext } from './context.js';
import { formatJson, parseOutputFormat } from './output.js';
import type { Verb } from './verb.js';

export interface ApplyOptions {
  filename: string[];
  dryRun?: boolean;
  /** false with --no-validate: skip the local check and leave validation to the controller. */
  validate?: boolean;
  /** "text" (default) or "json". */
  output?: string;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * What a dry run would do to one workload: a unified diff of its spec (as
 * YAML) and where new replicas would go, as the controller's scheduler
 * decided against the current cluster.
 */
export async function previewText(r: ApplyResult, color: boolean): Promise<string> {
  const p = r.preview;
  if (!p) return '';
  const { WorkloadSpec } = await import('../proto/gen/berth/v1/types.js');
  const { stringify } = await import('yaml');
  const { unifiedDiff } = await import('./diff.js');
  const yaml = (spec: typeof p.spec): string => (spec ? stringify(WorkloadSpec.toJSON(spec)) : '');
  const out: string[] = [];
  const diff = unifiedDiff(yaml(p.previous), yaml(p.spec), {
    from: p.previous ? `workload/${r.name} (stored)` : '/dev/null', to: `workload/${r.name} (after apply)`, color,
  });
  if (diff) out.push(diff.trimEnd());
  const update = p.spec?.update;
  if (p.replace > 0) {
    out.push(`would replace ${plural(p.replace, 'replica')} by a rolling update (maxSurge ${update?.maxSurge ?? 0}, maxUnavailable ${update?.maxUnavailable ?? 0}); first step:`);
  }
  for (const x of p.place) out.push(`would place ${x.name} on ${x.node}`);
  for (const x of p.remove) out.push(`would remove ${x.name} from ${x.node}`);
  if (p.pending > 0) out.push(`${plural(p.pending, 'replica')} would stay pending: ${p.pendingReason.replace(/^\d+ pending: /, '') || 'no node can take them'}`);
  return out.length > 0 ? out.join('\n') + '\n' : '';
}

/**
 * Registry used only for the local check of images without a host: the
 * client does not know the cluster's default registry, and the normalized
 * specs are thrown away; the controller validates again with the real one.
 */
const LOCAL_CHECK_REGISTRY = 'default-registry.invalid';

export async function runApply(ctx: CliContext, opts: ApplyOptions): Promise<number> {
  const { readInputFiles } = await import('./files.js');
  const files = await readInputFiles(opts.filename, ctx.io);
  if (opts.validate !== false) {
    // Every file is checked before anything is sent, so a bad second file
    // does not leave the first one applied.
    const { validateWorkloadFile } = await import('../lib/workload/index.js');
    for (const f of files) validateWorkloadFile(f.text, { source: f.source, defaultRegistry: LOCAL_CHECK_REGISTRY });
  }
  const format = opts.output === undefined || opts.output === 'text' ? 'text' : parseOutputFormat(opts.output, ['json']);
  const stdout = ctx.io.stdout as NodeJS.WritableStream & { isTTY?: boolean };
  const color = stdout.isTTY === true && ctx.io.env['NO_COLOR'] === undefined;
  const { withController } = await import('./client.js');
  const all: ApplyResult[] = [];
  await withController(ctx, async (api) => {
    // One call per file: each file is applied all or nothing by the controller.
    for (const f of files) {
      const res = await api.apply({ manifest: f.text, source: f.source, dryRun: Boolean(opts.dryRun) });
      if (format === 'json') {
        all.push(...res.results);
        continue;
      }
      for (const r of res.results) {
        ctx.out(`workload/${r.name} ${r.action}${opts.dryRun ? ' (dry run)' : ''}`);
        if (opts.dryRun) {
          const text = await previewText(r, color);
          if (text) ctx.io.stdout.write(text);
        }
      }
    }
  });
  if (format === 'json') {
    const { ApplyResult } = await import('../proto/gen/berth/v1/controller.js');
    ctx.out(formatJson(all.map((r) => ApplyResult.toJSON(r))));
  }
  return 0;
}

export const applyVerb: Verb = (program, run) => {
  program
    .command('apply')
    .summary('create or update workloads from a workload file')
    .description('Create or update the workloads of one or more workload files. Each file is validated and applied as a whole: when one document is wrong, nothing from that file is applied. Prints "created", "configured" or "unchanged" per workload.')
    .requiredOption('-f, --filename <file...>', 'workload file(s) to apply; "-" reads standard input')
    .option('--dry-run', 'change nothing; show each workload\'s spec diff and where the scheduler would place new replicas now')
    .option('--no-validate', 'skip the local check of the files (the controller still validates them)')
    .addOption(new Option('-o, --output <format>', 'output format: text, or json (with --dry-run, each workload\'s stored and new spec and planned placements)').choices(['text', 'json']).default('text'))
    .addHelpText('after', `
Examples:
  berth apply -f examples/hello.yaml
  berth apply -f web.yaml -f db.yaml
  cat web.yaml | berth apply -f -
  berth apply -f web.yaml --dry-run
  berth apply -f web.yaml --dry-run -o json`)
    .action(run((ctx, _cmd: Command, opts: ApplyOptions) => runApply(ctx, opts)));
};
