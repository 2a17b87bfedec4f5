/**
 * Per-replica load samples for the autoscaler: every interval (1 s), read
 * each running workload replica's cgroup counters, turn the cumulative CPU
 * time into percent of the replica's requested CPU over the interval, add
 * traffic figures when a TrafficSource is wired (the service load balancer,
 * issue 7), and hand one NodeMetrics to the sink (the NATS publisher).
 *
 * Roles, wired in agent/main.ts:
 *   ReplicaSource   the container manager: list() and stats(ids)
 *   TrafficSource   per-container request rate and open connections (optional)
 *   MetricsSink     publishes a NodeMetrics (agent/status)
 */
import { METRICS_VERSION, pause, type Logger } from '../../lib/index.js';
import type { ContainerStats } from '../../proto/gen/berth/v1/containers.js';
import type { NodeMetrics, ReplicaMetrics } from '../../proto/gen/berth/v1/metrics.js';
import { ContainerState, type Container } from '../../proto/gen/berth/v1/types.js';

export interface ReplicaSource {
  list(): Container[];
  stats(ids: readonly string[]): Promise<ContainerStats[]>;
}

export interface TrafficSource {
  /** Requests per second and open connections of a container, when known. */
  traffic(containerId: string): { requestsPerSecond: number; connections: number } | undefined;
}

export interface MetricsSink {
  publishMetrics(m: NodeMetrics): boolean;
}

export interface SamplerOptions {
  node: string;
  source: ReplicaSource;
  sink: MetricsSink;
  traffic?: TrafficSource;
  logger: Logger;
  /** Default 1000 ms. */
  intervalMs?: number;
}

interface Previous {
  cpuUsageNs: number;
  readUnixMs: number;
}

export class MetricsSampler {
  private readonly previous = new Map<string, Previous>();
  private readonly log: Logger;

  constructor(private readonly opts: SamplerOptions) {
    this.log = opts.logger.child({ component: 'metrics' });
  }

  /** Reads one sample of every running replica (the first sample of a replica has no CPU figure yet: 0). */
  async sample(): Promise<NodeMetrics> {
    const replicas = this.opts.source.list().filter((c) => c.workload !== '' && c.status?.state === ContainerState.CONTAINER_STATE_RUNNING);
    const byId = new Map(replicas.map((c) => [c.id, c]));
    const stats = replicas.length === 0 ? [] : await this.opts.source.stats([...byId.keys()]);
    const out: ReplicaMetrics[] = [];
    const seen = new Set<string>();
    let newest = 0;
    for (const s of stats) {
      const c = byId.get(s.id);
      if (!c) continue;
      seen.add(s.id);
      newest = Math.max(newest, s.readUnixMs);
      const prev = this.previous.get(s.id);
      this.previous.set(s.id, { cpuUsageNs: s.cpuUsageNs, readUnixMs: s.readUnixMs });
      let cpuPercent = 0;
      if (prev && s.readUnixMs > prev.readUnixMs && s.cpuUsageNs >= prev.cpuUsageNs) {
        const cores = (s.cpuUsageNs - prev.cpuUsageNs) / 1e6 / (s.readUnixMs - prev.readUnixMs);
        const requested = (c.spec?.resources?.cpuMillis ?? 0) / 1000;
        cpuPercent = (cores / (requested > 0 ? requested : 1)) * 100;
      }
      const health = c.status?.health ?? '';
      const t = this.opts.traffic?.traffic(s.id);
      out.push({
        workload: c.workload,
        containerId: s.id,
        ready: health === '' || health === 'healthy',
        cpuPercent,
        memoryBytes: s.memoryUsageBytes,
        requestsPerSecond: t?.requestsPerSecond ?? 0,
        connections: t?.connections ?? 0,
      });
    }
    for (const id of this.previous.keys()) if (!seen.has(id)) this.previous.delete(id);
    return { version: METRICS_VERSION, node: this.opts.node, unixMs: newest || Date.now(), replicas: out };
  }

  /** Samples and publishes every interval until the signal aborts. Errors are logged, never fatal. */
  async run(signal: AbortSignal): Promise<void> {
    const interval = this.opts.intervalMs ?? 1000;
    while (!signal.aborted) {
      try {
        const m = await this.sample();
        if (m.replicas.length > 0) this.opts.sink.publishMetrics(m);
      } catch (err) {
        this.log.warn('failed to sample replica metrics', { reason: err instanceof Error ? err.message : String(err) });
      }
      await pause(interval, signal);
    }
  }
}
