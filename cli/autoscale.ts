/**
 * `berth autoscale NAME --max N (--cpu-percent P | --requests-per-second R | --connections C) [...]`
 * and `berth autoscale NAME --off`: the imperative form of a workload file's
 * `spec.autoscale`. Flags are checked here before anything is sent; the
 * controller checks the policy against the workload (a cpu request for the
 * cpu metric, ports for requests/connections).
 */
import type { Command } from 'commander';
import type { AutoscaleRequest } from '../proto/gen/berth/v1/controller.js';
import { UsageError, type CliContext } from './context.js';
import type { Verb } from './verb.js';

export interface AutoscaleOptions {
  min?: string;
  max?: string;
  cpuPercent?: string;
  requestsPerSecond?: string;
  connections?: string;
  tolerance?: string;
  scaleToZeroAfter?: string;
  scaleDownWindow?: string;
  off?: boolean;
  output?: string;
}

function whole(flag: string, raw: string, min: number, max: number): number {
  const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: expected a whole number from ${min} to ${max}, got "${raw}"`);
  return n;
}

function positive(flag: string, raw: string, max: number): number {
  const n = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!(n > 0 && n <= max)) throw new UsageError(`${flag}: expected a number above 0 and at most ${max}, got "${raw}"`);
  return n;
}

/** "90", "90s", "2m", "1h" -> seconds. */
function seconds(flag: string, raw: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(raw.trim());
  const n = m ? Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1) : NaN;
  if (!(Number.isInteger(n) && n >= 1 && n <= 86400)) throw new UsageError(`${flag}: expected a duration such as "90s", "2m" or "1h" (1 s to 24 h), got "${raw}"`);
  return n;
}

/** Builds the request from the flags; UsageError names the flag at fault. */
export function autoscaleRequest(name: string, o: AutoscaleOptions): AutoscaleRequest {
  const given = (['cpuPercent', 'requestsPerSecond', 'connections'] as const).filter((k) => o[k] !== undefined);
  const policyFlags = [o.min, o.max, o.tolerance, o.scaleToZeroAfter, o.scaleDownWindow, ...given].some((v) => v !== undefined);
  if (o.off) {
    if (policyFlags) throw new UsageError('--off: expected no other policy flag with --off');
    return { name, off: true };
  }
  if (given.length !== 1) throw new UsageError(`expected exactly one of --cpu-percent, --requests-per-second, --connections, got ${given.length === 0 ? 'none' : given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} (or --off)`);
  if (o.max === undefined) throw new UsageError('--max: required (the most replicas), e.g. --max 10');
  const metric = given[0] === 'cpuPercent' ? 'cpu' : given[0] === 'requestsPerSecond' ? 'requests' : 'connections';
  const target = metric === 'cpu' ? positive('--cpu-percent', o.cpuPercent ?? '', 1000) : metric === 'requests' ? positive('--requests-per-second', o.requestsPerSecond ?? '', 1_000_000) : positive('--connections', o.connections ?? '', 1_000_000);
  const idle = o.scaleToZeroAfter === undefined ? undefined : seconds('--scale-to-zero-after', o.scaleToZeroAfter);
  const min = o.min === undefined ? (idle !== undefined ? 0 : 1) : whole('--min', o.min, 0, 10000);
  const max = whole('--max', o.max, 1, 10000);
  if (max < min) throw new UsageError(`--max: expected at least --min (${min}), got ${max}`);
  const tolerance = o.tolerance === undefined ? 0.1 : Number(o.tolerance);
  if (!(tolerance >= 0 && tolerance <= 0.9) || o.tolerance?.trim() === '') throw new UsageError(`--tolerance: expected a number from 0 to 0.9, got "${o.tolerance}"`);
  const down = o.scaleDownWindow === undefined ? 60 : seconds('--scale-down-window', o.scaleDownWindow);
  return {
    name,
    off: false,
    autoscale: {
      min, max, metric, target, tolerance,
      scaleUp: { stabilizationSeconds: 0, maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 },
      scaleDown: { stabilizationSeconds: down, maxStepPercent: 50, maxStepReplicas: 0, periodSeconds: 15 },
      ...(idle !== undefined ? { scaleToZeroIdleSeconds: idle } : {}),
    },
  };
}

export async function runAutoscale(ctx: CliContext, name: string, o: AutoscaleOptions): Promise<number> {
  if (o.output !== undefined && o.output !== 'json') throw new UsageError(`-o, --output: expected "json", got "${o.output}"`);
  const req = autoscaleRequest(name, o);
  const { withController } = await import('./client.js');
  const w = await withController(ctx, (api) => api.autoscale(req));
  if (o.output === 'json') {
    const { Workload } = await import('../proto/gen/berth/v1/types.js');
    const { formatJson } = await import('./output.js');
    ctx.out(formatJson(Workload.toJSON(w)));
    return 0;
  }
  const a = w.spec?.autoscale;
  if (!a) ctx.out(`workload/${name} autoscaling off (replicas stay at ${w.spec?.replicas ?? 0})`);
  else {
    const unit = a.metric === 'cpu' ? '% of the requested cpu' : a.metric === 'requests' ? ' requests/s' : ' open connections';
    const zero = a.scaleToZeroIdleSeconds !== undefined ? `, to zero after ${a.scaleToZeroIdleSeconds}s idle` : '';
    ctx.out(`workload/${name} autoscaled: ${a.min} to ${a.max} replicas, target ${a.target}${unit} per replica${zero} (now ${w.spec?.replicas ?? 0})`);
  }
  return 0;
}

export const autoscaleVerb: Verb = (program, run) => {
  program
    .command('autoscale')
    .summary('scale a workload with its load (or turn that off)')
    .description(`Set the built-in autoscaler's policy of a workload: between --min and --max replicas, aiming at one target per replica: --cpu-percent (of the requested cpu), --requests-per-second or --connections (open). Decisions and their reasons show in "berth events" and "berth describe workload". The same policy can be written in the workload file (spec.autoscale); a file applied later replaces it.`)
    .argument('<name>', 'workload name')
    .option('--min <n>', 'fewest replicas (default 1; 0 with --scale-to-zero-after)')
    .option('--max <n>', 'most replicas (required unless --off)')
    .option('--cpu-percent <p>', 'target cpu use per replica, percent of its cpu request')
    .option('--requests-per-second <r>', 'target requests per second per replica')
    .option('--connections <c>', 'target open connections per replica')
    .option('--tolerance <t>', 'no change while within this fraction of the target (default 0.1)')
    .option('--scale-down-window <duration>', 'scale down to the highest recommendation seen this long (default 60s)')
    .option('--scale-to-zero-after <duration>', 'go to zero replicas after this long without traffic (requests/connections only)')
    .option('--off', 'turn autoscaling off (the count stays where it is)')
    .option('-o, --output <format>', '"json" to print the workload')
    .addHelpText('after', `
Examples:
  berth autoscale web --min 1 --max 10 --cpu-percent 60
  berth autoscale api --max 20 --requests-per-second 200 --scale-to-zero-after 2m
  berth autoscale web --off`)
    .action(run((ctx, _cmd: Command, opts: AutoscaleOptions, args) => runAutoscale(ctx, args[0] as string, opts)));
};
