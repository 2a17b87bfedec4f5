/**
 * The autoscaler loop, run by the leader only: every interval, for each
 * workload with an `autoscale` policy, turn the load window into an
 * observation, call the pure decide(), and when the count changes, set the
 * workload's replicas (the reconciler does the rest) and record an event
 * whose message says why.
 *
 * It talks to the rest of the controller through two small roles, wired in
 * controller/main.ts: AutoscaleTarget (read autoscaled workloads, set a
 * count only if it is still what we saw) and AutoscaleEvents.
 */
import { pause, type Logger } from '../../lib/index.js';
import { decide } from './decide.js';
import { EMPTY_HISTORY, type AutoscaleDecision, type AutoscaleHistory, type AutoscalePolicy } from './types.js';
import type { LoadWindow } from './window.js';

export interface AutoscaledWorkload {
  name: string;
  /** The replica count the workload asks for now. */
  replicas: number;
  policy: AutoscalePolicy;
}

export interface AutoscaleTarget {
  listAutoscaled(options?: { signal?: AbortSignal }): Promise<AutoscaledWorkload[]>;
  /**
   * Sets `name`'s replicas from `from` to `to`; returns false (and changes
   * nothing) when the count is no longer `from` (a user's `berth scale` won).
   */
  setReplicas(name: string, from: number, to: number, reason: string, options?: { signal?: AbortSignal }): Promise<boolean>;
}

export interface AutoscaleEvents {
  scaled(workload: string, from: number, to: number, reason: string): Promise<void>;
}

export interface AutoscalerOptions {
  target: AutoscaleTarget;
  events: AutoscaleEvents;
  window: LoadWindow;
  logger: Logger;
  /** Default 1000 ms. */
  intervalMs?: number;
  clock?: () => number;
}

export interface TickResult {
  workload: string;
  decision: AutoscaleDecision;
  /** The change was written (false when nothing changed or the count moved under us). */
  applied: boolean;
}

export class Autoscaler {
  private readonly histories = new Map<string, AutoscaleHistory>();
  private readonly activations = new Set<string>();
  /** Each workload's replica count after the last pass (what activate() checks). */
  private readonly lastReplicas = new Map<string, number>();
  private ticking: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  private readonly clock: () => number;

  constructor(private readonly options: AutoscalerOptions) {
    this.log = options.logger.child({ component: 'autoscaler' });
    this.clock = options.clock ?? Date.now;
  }

  /**
   * A connection is held (or forwarded by a node's activator) for `workload`:
   * it counts as activity now, and a workload at zero replicas gets one at
   * once (a tick runs now). A workload last seen with replicas is only
   * touched (agents repeat this every second while they hold or forward
   * connections); the flag stays for the next tick in case it went to zero
   * meanwhile.
   */
  async activate(workload: string, options: { signal?: AbortSignal } = {}): Promise<TickResult[]> {
    this.activations.add(workload);
    this.options.window.touch(workload, this.clock());
    if ((this.lastReplicas.get(workload) ?? 0) > 0) return [];
    return this.tick(options);
  }

  /** One pass over every autoscaled workload; passes never overlap (the loop's and an activation's run one after the other). */
  tick(options: { signal?: AbortSignal } = {}): Promise<TickResult[]> {
    const run = (): Promise<TickResult[]> => this.tickNow(options);
    const p = this.ticking.then(run, run);
    this.ticking = p.then(() => undefined, () => undefined);
    return p;
  }

  private async tickNow(options: { signal?: AbortSignal }): Promise<TickResult[]> {
    const workloads = await this.options.target.listAutoscaled(options);
    const seen = new Set(workloads.map((w) => w.name));
    for (const name of this.histories.keys()) if (!seen.has(name)) this.histories.delete(name);
    for (const name of this.lastReplicas.keys()) if (!seen.has(name)) this.lastReplicas.delete(name);
    for (const name of this.activations) if (!seen.has(name)) this.activations.delete(name);
    // Agents report every workload's replicas: keep samples only of the workloads that are autoscaled.
    this.options.window.retain(seen, this.clock());
    const results: TickResult[] = [];
    for (const w of workloads) {
      options.signal?.throwIfAborted();
      const now = this.clock();
      const observation = this.options.window.observe(w.name, w.policy.metric, w.replicas, now);
      if (this.activations.delete(w.name)) observation.activation = true;
      const decision = decide(w.name, w.policy, observation, this.histories.get(w.name) ?? EMPTY_HISTORY);
      let applied = false;
      if (decision.changed) {
        applied = await this.options.target.setReplicas(w.name, w.replicas, decision.desired, decision.reason, options);
        if (applied) {
          this.histories.set(w.name, decision.history);
          this.log.info('scaled workload', { workload: w.name, from: w.replicas, to: decision.desired, reason: decision.reason });
          await this.options.events.scaled(w.name, w.replicas, decision.desired, decision.reason);
        } else {
          // Someone else changed the count: keep the recommendations, not a change we didn't make.
          this.histories.set(w.name, { ...decision.history, changes: decision.history.changes.filter((c) => c.atMs !== now) });
        }
      } else {
        this.histories.set(w.name, decision.history);
      }
      this.lastReplicas.set(w.name, applied ? decision.desired : w.replicas);
      results.push({ workload: w.name, decision, applied });
    }
    return results;
  }

  /** Ticks every interval until the signal aborts (leadership lost or shutdown). Errors are logged, not fatal. */
  async run(signal: AbortSignal): Promise<void> {
    const interval = this.options.intervalMs ?? 1000;
    while (!signal.aborted) {
      try {
        await this.tick({ signal });
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn('autoscaler pass failed', { error: err instanceof Error ? err.message : String(err) });
      }
      await pause(interval, signal);
    }
  }
}
