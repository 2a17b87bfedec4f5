/**
 * The leader's short memory of load: per workload, per replica, the samples
 * agents reported in the last few seconds. No metrics server: agents publish
 * a sample per replica every second; a new leader starts empty and fills
 * from fresh reports (until then replicas without samples count as starting,
 * which never scales anything down).
 *
 * observe() turns the window into the decision function's observation:
 *   ready     replicas reported ready with at least one sample in the window
 *   starting  the rest of the workload's current count (starting, unready,
 *             or not yet measured)
 *   total     the metric summed over the ready replicas, each replica's
 *             samples averaged over the window
 */
import type { AutoscaleMetric, AutoscaleObservation } from './types.js';

export interface ReplicaSample {
  workload: string;
  replica: string;
  atMs: number;
  /** Passing health checks (or running with none) when sampled. */
  ready: boolean;
  /** CPU use as percent of the replica's requested CPU (100 = exactly the request). */
  cpuPercent: number;
  requestsPerSecond: number;
  connections: number;
}

export interface WindowOptions {
  /** How far back samples count (default 5 s). */
  windowMs?: number;
  /** When this leader started watching: the earliest "last active" time it can claim (no scale to zero on an empty memory). */
  sinceMs: number;
}

interface Series {
  samples: ReplicaSample[];
}

export class LoadWindow {
  private readonly windowMs: number;
  private readonly sinceMs: number;
  private readonly byWorkload = new Map<string, Map<string, Series>>();
  private readonly lastActive = new Map<string, number>();

  constructor(options: WindowOptions) {
    this.windowMs = options.windowMs ?? 5000;
    this.sinceMs = options.sinceMs;
  }

  add(sample: ReplicaSample): void {
    if (!Number.isFinite(sample.atMs)) return;
    let replicas = this.byWorkload.get(sample.workload);
    if (!replicas) {
      replicas = new Map();
      this.byWorkload.set(sample.workload, replicas);
    }
    let series = replicas.get(sample.replica);
    if (!series) {
      series = { samples: [] };
      replicas.set(sample.replica, series);
    }
    series.samples.push(sample);
    if (sample.requestsPerSecond > 0 || sample.connections > 0) {
      this.lastActive.set(sample.workload, Math.max(this.lastActive.get(sample.workload) ?? 0, sample.atMs));
    }
  }

  /** Marks a workload active now (a connection held for it at zero replicas, for instance). */
  touch(workload: string, atMs: number): void {
    this.lastActive.set(workload, Math.max(this.lastActive.get(workload) ?? 0, atMs));
  }

  /** Drops samples older than the window and replicas without samples. */
  prune(nowMs: number): void {
    for (const workload of [...this.byWorkload.keys()]) this.pruneWorkload(workload, nowMs);
  }

  private pruneWorkload(workload: string, nowMs: number): void {
    const replicas = this.byWorkload.get(workload);
    if (!replicas) return;
    const from = nowMs - this.windowMs;
    for (const [id, series] of replicas) {
      const first = series.samples.findIndex((s) => s.atMs > from);
      if (first === -1) replicas.delete(id);
      else if (first > 0) series.samples = series.samples.slice(first);
    }
    if (replicas.size === 0) this.byWorkload.delete(workload);
  }

  /** Keeps only `workloads` (the autoscaled ones), with samples no older than the window. */
  retain(workloads: ReadonlySet<string>, nowMs: number): void {
    for (const w of [...this.byWorkload.keys()]) if (!workloads.has(w)) this.byWorkload.delete(w);
    for (const w of [...this.lastActive.keys()]) if (!workloads.has(w)) this.lastActive.delete(w);
    this.prune(nowMs);
  }

  observe(workload: string, metric: AutoscaleMetric, current: number, nowMs: number): AutoscaleObservation {
    this.pruneWorkload(workload, nowMs);
    let ready = 0;
    let total = 0;
    for (const series of this.byWorkload.get(workload)?.values() ?? []) {
      const latest = series.samples[series.samples.length - 1];
      if (!latest?.ready) continue;
      ready++;
      const values = series.samples.filter((s) => s.ready).map((s) => (metric === 'cpu' ? s.cpuPercent : metric === 'requests' ? s.requestsPerSecond : s.connections));
      total += values.reduce((a, b) => a + b, 0) / values.length;
    }
    return {
      nowMs,
      current,
      ready,
      starting: Math.max(0, current - ready),
      total,
      lastActiveMs: Math.max(this.lastActive.get(workload) ?? 0, this.sinceMs),
    };
  }
}
