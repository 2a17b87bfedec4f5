/** `berth scale NAME --replicas N` */
import type { Command } from 'commander';
import { UsageError, type CliContext } from './context.js';
import type { Verb } from './verb.js';

export const MAX_REPLICAS = 10000;

export function parseReplicas(raw: string): number {
  const t = raw.trim();
  const n = /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > MAX_REPLICAS) {
    throw new UsageError(`--replicas: expected a whole number from 0 to ${MAX_REPLICAS}, got "${raw}"`);
  }
  return n;
}

export async function runScale(ctx: CliContext, name: string, replicasRaw: string): Promise<number> {
  const replicas = parseReplicas(replicasRaw);
  const { withController } = await import('./client.js');
  await withController(ctx, (api) => api.scale({ name, replicas }));
  ctx.out(`workload/${name} scaled to ${replicas}`);
  return 0;
}

export const scaleVerb: Verb = (program, run) => {
  program
    .command('scale')
    .summary('set the number of replicas of a workload')
    .description('Set the number of replicas of a workload (0 to 10000). This makes a new spec revision.')
    .argument('<name>', 'workload name')
    .requiredOption('--replicas <n>', 'the new number of replicas')
    .addHelpText('after', `
Examples:
  berth scale web --replicas 5
  berth scale web --replicas 0`)
    .action(run((ctx, _cmd: Command, opts: { replicas: string }, args) => runScale(ctx, args[0] as string, opts.replicas)));
};
