/** `berth rollout history|status|undo|restart NAME` */
import { Option, type Command } from 'commander';
import type { RolloutStatusResponse } from '../proto/gen/berth/v1/controller.js';
import type { WorkloadRevision } from '../proto/gen/berth/v1/types.js';
import { BerthError, ErrorCode, FailedPreconditionError, isCode } from '../lib/errors.js';
import { UsageError, type CliContext } from './context.js';
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

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** "90s", "5m", "1h", "250ms" or plain seconds ("30") -> ms; "0" means no limit. */
export function parseDuration(raw: string, flag: string): number {
  const m = DURATION.exec(raw.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[(m[2] ?? 's') as keyof typeof UNIT_MS] : NaN;
  if (!Number.isFinite(ms) || ms > 7 * 24 * 3_600_000) {
    throw new UsageError(`${flag}: expected a duration such as 30s, 5m or 1h (0 for no limit, at most 168h), got "${raw}"`);
  }
  return Math.round(ms);
}

/** "true"/"false" (and yes/no, 1/0) for flags like --watch=false. */
export function parseBool(raw: string | boolean | undefined, flag: string): boolean {
  if (raw === undefined || raw === true) return true;
  if (raw === false) return false;
  const v = raw.trim().toLowerCase();
  if (['true', 'yes', '1'].includes(v)) return true;
  if (['false', 'no', '0'].includes(v)) return false;
  throw new UsageError(`${flag}: expected true or false, got "${raw}"`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** One line about a rollout in progress or done, e.g. `revision 4: 2 of 3 updated, 1 ready, 3 available; waiting for 1 old replica to be replaced`. */
export function progressLine(p: RolloutStatusResponse): string {
  if (p.complete) return `workload "${p.workload}" successfully rolled out (revision ${p.revision}, ${plural(p.desired, 'replica')} ready)`;
  const counts = `revision ${p.revision}: ${p.updated} of ${p.desired} updated, ${p.updatedReady} ready, ${p.available} available`;
  const waiting: string[] = [];
  if (p.pending > 0) waiting.push(`${p.pending} pending${p.pendingReason ? ` (${p.pendingReason.replace(/^\d+ pending: /, '')})` : ''}`);
  if (p.old > 0) waiting.push(`waiting for ${plural(p.old, 'old replica')} to be replaced`);
  if (p.updated > p.desired) waiting.push(`waiting for ${plural(p.updated - p.desired, 'extra replica')} to be removed`);
  else if (p.updated < p.desired && p.pending === 0) waiting.push(`waiting for ${plural(p.desired - p.updated, 'new replica')} to be placed`);
  if (p.updatedReady < Math.min(p.updated, p.desired)) waiting.push(`waiting for ${plural(Math.min(p.updated, p.desired) - p.updatedReady, 'updated replica')} to be ready`);
  return waiting.length > 0 ? `${counts}; ${waiting.join('; ')}` : counts;
}

/** The message of a rollout that failed and was rolled back by the controller. */
export function rolledBackMessage(p: RolloutStatusResponse): string {
  return `rollout of "${p.workload}" revision ${p.rolledBackRevision} failed and was rolled back (now revision ${p.revision}, ${p.cause.replace(/:.*$/s, '')}): ${p.rollbackReason}`;
}

export interface RolloutStatusOptions {
  timeout?: string;
  watch?: string | boolean;
  /** Poll interval (tests); 1 s by default. */
  intervalMs?: number;
}

/**
 * Follows the workload's rollout until it completes (exit 0), was rolled back
 * (error, exit 1) or the timeout passes (error, exit 1). A revision replaced
 * by a newer one (another apply) is followed on to the newer one.
 */
export async function runRolloutStatus(ctx: CliContext, name: string, opts: RolloutStatusOptions): Promise<number> {
  const timeoutMs = parseDuration(opts.timeout ?? '5m', '--timeout');
  const watch = parseBool(opts.watch, '--watch');
  const intervalMs = opts.intervalMs ?? 1000;
  const { withController } = await import('./client.js');
  const started = Date.now();
  return withController(ctx, async (api) => {
    let p = await api.rolloutStatus(name);
    if (p.rolledBackRevision > 0) throw new FailedPreconditionError(rolledBackMessage(p));
    let following = p.revision;
    let lastLine = '';
    let lastDetails = '';
    let unavailable = 0;
    for (;;) {
      const line = progressLine(p);
      if (line !== lastLine) ctx.out(line);
      lastLine = line;
      if (p.complete) return 0;
      const details = p.notReady.map((r) => `  ${r}`).join('\n');
      if (watch && details !== '' && details !== lastDetails) ctx.out(details);
      lastDetails = details;
      if (!watch) return 0;
      if (timeoutMs > 0 && Date.now() - started >= timeoutMs) {
        throw new BerthError(ErrorCode.DeadlineExceeded, `timed out after ${opts.timeout ?? '5m'} waiting for the rollout of "${name}" revision ${p.revision} (${line.replace(/^revision \d+: /, '')})`);
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
      let next: RolloutStatusResponse;
      try {
        next = await api.rolloutStatus(name);
        unavailable = 0;
      } catch (err) {
        // A controller restarting or failing over: keep following for a while.
        if (isCode(err, 'unavailable') && ++unavailable < 30) continue;
        throw err;
      }
      if (next.revision !== following) {
        if (next.rolledBackRevision > 0) throw new FailedPreconditionError(rolledBackMessage(next));
        ctx.out(`revision ${following} was replaced by revision ${next.revision} (${next.cause || 'unknown cause'}); following revision ${next.revision}`);
        following = next.revision;
      }
      p = next;
    }
  });
}

export async function runUndo(ctx: CliContext, name: string, opts: { toRevision?: string }): Promise<number> {
  let toRevision = 0;
  if (opts.toRevision !== undefined) {
    if (!/^\d+$/.test(opts.toRevision.trim()) || Number(opts.toRevision) < 1 || !Number.isSafeInteger(Number(opts.toRevision))) {
      throw new UsageError(`--to-revision: expected a revision number from berth rollout history (1 or more), got "${opts.toRevision}"`);
    }
    toRevision = Number(opts.toRevision);
  }
  const { withController } = await import('./client.js');
  const res = await withController(ctx, (api) => api.undo({ name, toRevision }));
  ctx.out(`workload/${name} rolled back to revision ${res.toRevision} (now revision ${res.workload?.status?.revision ?? '?'})`);
  return 0;
}

export async function runRestart(ctx: CliContext, name: string): Promise<number> {
  const { withController } = await import('./client.js');
  const w = await withController(ctx, (api) => api.restart(name));
  ctx.out(`workload/${name} restarted (revision ${w.status?.revision ?? '?'})`);
  return 0;
}

export const rolloutVerb: Verb = (program, run) => {
  const rollout = program
    .command('rollout')
    .summary('follow, inspect, undo or restart the rollout of a workload')
    .description('Follow a workload\'s rolling update, list its spec revisions (the last 10 are kept), go back to an earlier one, or replace every replica without changing the file.')
    .addHelpText('after', `
Examples:
  berth rollout status web
  berth rollout history web
  berth rollout undo web
  berth rollout undo web --to-revision 3
  berth rollout restart web`);

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

  rollout
    .command('status')
    .summary('follow a rollout until it completes')
    .description('Follow the rollout of the workload\'s current revision: how many replicas run the new spec and are ready, and what it waits for. Exits 0 once every replica runs the current revision and is ready; exits 1 when the revision failed and the controller rolled it back (printing why), or when the timeout passes. Run right after a rollback, it reports that rollback and exits 1 until the next change.')
    .argument('[name]', 'workload name')
    .option('--timeout <duration>', 'give up after this long (30s, 5m, 1h; 0 for no limit)', '5m')
    .option('-w, --watch [bool]', 'keep following until done (--watch=false prints the status once)', true)
    .option('--no-watch', 'print the status once')
    .addHelpText('after', `
Examples:
  berth apply -f web.yaml && berth rollout status web
  berth rollout status web --timeout 2m
  berth rollout status web --watch=false`)
    .action(run((ctx, _cmd: Command, opts: RolloutStatusOptions, args) => {
      let name = args[0] as string | undefined;
      // "-w web": the optional flag value took the name.
      if (name === undefined && typeof opts.watch === 'string' && !/^(true|false|yes|no|1|0)$/i.test(opts.watch.trim())) {
        name = opts.watch;
        opts.watch = true;
      }
      if (name === undefined) throw new UsageError('rollout status: expected a workload name (berth rollout status NAME)');
      return runRolloutStatus(ctx, name, opts);
    }));

  rollout
    .command('undo')
    .summary('go back to an earlier revision')
    .description('Make a new revision with the spec of an earlier one (the previous different spec by default, or --to-revision N from berth rollout history); the replica count stays. Replicas are replaced by a rolling update.')
    .argument('<name>', 'workload name')
    .option('--to-revision <n>', 'the revision to go back to')
    .addHelpText('after', `
Examples:
  berth rollout undo web
  berth rollout undo web --to-revision 2`)
    .action(run((ctx, _cmd: Command, opts: { toRevision?: string }, args) => runUndo(ctx, args[0] as string, opts)));

  rollout
    .command('restart')
    .summary('replace every replica without changing the spec')
    .description('Make a new revision with the same spec and a new restart time, so a rolling update (maxSurge, maxUnavailable) replaces every replica. Applying the same file again afterwards does not restart them again.')
    .argument('<name>', 'workload name')
    .addHelpText('after', `
Examples:
  berth rollout restart web && berth rollout status web`)
    .action(run((ctx, _cmd: Command, _opts: unknown, args) => runRestart(ctx, args[0] as string)));
};
