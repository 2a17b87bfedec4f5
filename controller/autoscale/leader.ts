/**
 * The autoscaler as the controller runs it: every controller receives the
 * agents' metrics, but only the leader keeps a window and decides. Each
 * leadership term starts an empty window (its "since" is the term's start,
 * so a new leader never scales to zero on an empty memory) and an Autoscaler
 * loop that ends with the term.
 *
 * The store is reached through the WorkloadReader/WorkloadWriter roles; a
 * change is written only when the count is still what the decision saw (a
 * user's `berth scale` meanwhile wins). Every change is an event
 * (reason "Scaled") whose message says why.
 */
import { messageOf } from '../../lib/errors.js';
import type { Logger } from '../../lib/logging.js';
import type { NodeMetrics } from '../../proto/gen/berth/v1/metrics.js';
import type { AutoscaleSpec, Event } from '../../proto/gen/berth/v1/types.js';
import type { LeaderElection, WorkloadReader, WorkloadWriter } from '../store/index.js';
import { Autoscaler, type AutoscaledWorkload, type AutoscaleTarget } from './autoscaler.js';
import type { AutoscaleMetric, AutoscalePolicy } from './types.js';
import { LoadWindow } from './window.js';

const METRICS: readonly string[] = ['cpu', 'requests', 'connections'];

/** The decision function's policy from the contract's AutoscaleSpec; undefined for a spec it can't use. */
export function policyOf(a: AutoscaleSpec): AutoscalePolicy | undefined {
  if (!METRICS.includes(a.metric) || !a.scaleUp || !a.scaleDown || a.max < Math.max(a.min, 1) || !(a.target > 0)) return undefined;
  const p: AutoscalePolicy = {
    min: a.min, max: a.max, metric: a.metric as AutoscaleMetric, target: a.target, tolerance: a.tolerance,
    scaleUp: { ...a.scaleUp }, scaleDown: { ...a.scaleDown },
  };
  if (a.scaleToZeroIdleSeconds !== undefined) p.scaleToZero = { idleSeconds: a.scaleToZeroIdleSeconds };
  return p;
}

/** AutoscaleTarget over the workload store. */
export class StoreAutoscaleTarget implements AutoscaleTarget {
  constructor(private readonly store: WorkloadReader & Pick<WorkloadWriter, 'scaleWorkload'>) {}

  async listAutoscaled(options: { signal?: AbortSignal } = {}): Promise<AutoscaledWorkload[]> {
    const out: AutoscaledWorkload[] = [];
    for (const w of await this.store.listWorkloads(undefined, options)) {
      const policy = w.spec?.autoscale ? policyOf(w.spec.autoscale) : undefined;
      if (policy && w.metadata?.name) out.push({ name: w.metadata.name, replicas: w.spec?.replicas ?? 0, policy });
    }
    return out;
  }

  async setReplicas(name: string, from: number, to: number, _reason: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const w = await this.store.getWorkload(name, options);
    if ((w.spec?.replicas ?? 0) !== from || !w.spec?.autoscale) return false;
    await this.store.scaleWorkload(name, to, options);
    return true;
  }
}

export interface LeaderAutoscalerOptions {
  election: Pick<LeaderElection, 'onTerm'>;
  store: WorkloadReader & Pick<WorkloadWriter, 'scaleWorkload'>;
  events: { emit(e: Omit<Event, 'unixMs'>): void };
  logger: Logger;
  intervalMs?: number;
  clock?: () => number;
}

export class LeaderAutoscaler {
  private window: LoadWindow | undefined;
  private autoscaler: Autoscaler | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly log: Logger;
  private readonly clock: () => number;

  constructor(private readonly opts: LeaderAutoscalerOptions) {
    this.log = opts.logger.child({ component: 'autoscaler' });
    this.clock = opts.clock ?? Date.now;
  }

  /** Feeds one node's metrics into the leader's window (ignored while not leading). Times are this controller's receipt time. */
  ingest(m: NodeMetrics, receivedMs: number): void {
    const w = this.window;
    if (!w) return;
    for (const r of m.replicas) {
      w.add({ workload: r.workload, replica: r.containerId, atMs: receivedMs, ready: r.ready, cpuPercent: r.cpuPercent, requestsPerSecond: r.requestsPerSecond, connections: r.connections });
    }
  }

  /**
   * A node holds (or forwards) a connection for `workload` (an activation
   * from NATS): count it as activity and, at zero replicas, start one now.
   * Leader only (false elsewhere); true when this call scaled it up. Never
   * rejects: a failure is logged and the next activation or pass retries.
   */
  async activate(workload: string): Promise<boolean> {
    const a = this.autoscaler;
    if (!a) return false;
    try {
      const results = await a.activate(workload);
      return results.some((r) => r.workload === workload && r.applied);
    } catch (err) {
      this.log.warn('failed to act on an activation', { workload, error: messageOf(err) });
      return false;
    }
  }

  attach(): void {
    this.unsubscribe ??= this.opts.election.onTerm((term) => {
      const window = new LoadWindow({ sinceMs: this.clock() });
      const autoscaler = new Autoscaler({
        target: new StoreAutoscaleTarget(this.opts.store),
        events: {
          scaled: async (workload, from, to, reason) => {
            this.opts.events.emit({ kind: 'workload', name: workload, workload, reason: 'Scaled', message: reason, node: '', severity: 'normal' });
            this.log.debug('scale event', { workload, from, to });
          },
        },
        window,
        logger: this.opts.logger,
        ...(this.opts.intervalMs !== undefined ? { intervalMs: this.opts.intervalMs } : {}),
        clock: this.clock,
      });
      this.window = window;
      this.autoscaler = autoscaler;
      this.log.info('autoscaler started for this term');
      void autoscaler.run(term.signal).finally(() => {
        if (this.autoscaler === autoscaler) {
          this.autoscaler = undefined;
          this.window = undefined;
        }
      });
    });
  }

  detach(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
