/** `berth rollout history NAME` */
import { Option, type Command } from 'commander';
import type { WorkloadRevision } from '../proto/gen/berth/v1/types.js';
import type { CliContext } from './context.js';
import { formatAge, formatJson, formatTable, formatYaml, parseOutputFormat } from './output.js';
import type { Verb } from './verb.js';

export function historyTable(revisions: readonly WorkloadRevision[], nowMs = Date.now()): string {
  const rows = [...revisions]
    .sort((a, b) => a.revision - b.revision)
    .map((r) => [String(r.revision), r.cause || '-', r.spec?.image ?? '', String(r.spec?.replicas ?? 0), formatAge(r.createdUnixMs, nowMs)]);
  return formatTable(['REVISION', 'CAUSE', 'IMAGE', 'REPLICAS', 'AGE'], rows);
}

export async function runHistory(ctx: CliContext, name: string, output: string | undefined): Promise<number> {
  const format = parseOutputFormat(output, ['table', 'json', 'yaml']);
  const { withController } = await import('./client.js');
  const res = await withController(ctx, (api) => api.history(name));
  if (format === 'table') {
    ctx.out(historyTable(res.revisions));
    return 0;
  }
  const { WorkloadRevision } = await import('../proto/gen/berth/v1/types.js');
  const value = res.revisions.map((r) => WorkloadRevision.toJSON(r));
  ctx.out(format === 'json' ? formatJson(value) : await formatYaml(value));
  return 0;
}

export const rolloutVerb: Verb = (program, run) => {
  const rollout = program
    .command('rollout')
    .summary('inspect the revisions of a workload')
    .description('Inspect the spec revisions of a workload (the last 10 are kept).')
    .addHelpText('after', `
Examples:
  berth rollout history web`);

  rollout
    .command('history')
    .summary('list the kept revisions of a workload')
    .argument('<name>', 'workload name')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addHelpText('after', `
Examples:
  berth rollout history web
  berth rollout history web -o yaml`)
    .action(run((ctx, _cmd: Command, opts: { output?: string }, args) => runHistory(ctx, args[0] as string, opts.output)));
};
