/** `berth apply -f FILE [-f FILE...] [--dry-run]` */
import type { Command } from 'commander';
import type { CliContext } from './context.js';
import type { Verb } from './verb.js';

export interface ApplyOptions {
  filename: string[];
  dryRun?: boolean;
  /** false with --no-validate: skip the local check and leave validation to the controller. */
  validate?: boolean;
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
  const { withController } = await import('./client.js');
  await withController(ctx, async (api) => {
    // One call per file: each file is applied all or nothing by the controller.
    for (const f of files) {
      const res = await api.apply({ manifest: f.text, source: f.source, dryRun: Boolean(opts.dryRun) });
      for (const r of res.results) ctx.out(`workload/${r.name} ${r.action}${opts.dryRun ? ' (dry run)' : ''}`);
    }
  });
  return 0;
}

export const applyVerb: Verb = (program, run) => {
  program
    .command('apply')
    .summary('create or update workloads from a workload file')
    .description('Create or update the workloads of one or more workload files. Each file is validated and applied as a whole: when one document is wrong, nothing from that file is applied. Prints "created", "configured" or "unchanged" per workload.')
    .requiredOption('-f, --filename <file...>', 'workload file(s) to apply; "-" reads standard input')
    .option('--dry-run', 'validate and show what would change, without changing anything')
    .option('--no-validate', 'skip the local check of the files (the controller still validates them)')
    .addHelpText('after', `
Examples:
  berth apply -f examples/hello.yaml
  berth apply -f web.yaml -f db.yaml
  cat web.yaml | berth apply -f -
  berth apply -f web.yaml --dry-run`)
    .action(run((ctx, _cmd: Command, opts: ApplyOptions) => runApply(ctx, opts)));
};
