/**
 * Health checks of one running container, per its HealthSpec.
 *
 * Vocabulary
 *   probe      one check: an HTTP GET (2xx/3xx passes), a TCP connect, or a
 *              command run inside the container (exit 0 passes), bounded by
 *              the timeout.
 *   health     "starting" until the first passing probe; "healthy" after a
 *              passing probe; "unhealthy" after `failure_threshold`
 *              consecutive failing probes. Failures during the start period
 *              do not count (a pass during it still makes it healthy).
 *
 * Lifecycle: `start()` runs the first probe after one interval, then one per
 * interval (never two at once); `stop()` ends it. `onChange` is called on
 * every change of health.
 */
import { connect } from 'node:net';
import { request } from 'node:http';
import { messageOf } from '../../lib/index.js';
import type { HealthSpec } from '../../proto/gen/berth/v1/types.js';
import { WORKLOAD_DEFAULTS } from '../../lib/index.js';

export type Health = 'starting' | 'healthy' | 'unhealthy';

/** Runs one probe; resolves on pass, rejects (with the reason) on failure. */
export interface Prober {
  exec(args: string[], timeoutMs: number): Promise<void>;
  /** The address the container's ports are reached on, or undefined when it has none. */
  address(): string | undefined;
}

export interface HealthResult {
  health: Health;
  /** Why the last probe failed ("" after a pass). */
  lastError: string;
}

function withTimeout<T>(p: (signal: AbortSignal) => Promise<T>, ms: number, what: string): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort();
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
  });
  return Promise.race([p(ac.signal), timeout]).finally(() => clearTimeout(timer));
}

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<void> {
  return withTimeout((signal) => new Promise<void>((resolve, reject) => {
    const s = connect({ host, port, signal });
    s.once('connect', () => {
      s.destroy();
      resolve();
    });
    s.once('error', (e) => reject(new Error(`tcp connect to ${host}:${port} failed: ${e.message}`)));
  }), timeoutMs, `tcp connect to ${host}:${port}`);
}

export function httpProbe(host: string, port: number, path: string, timeoutMs: number): Promise<void> {
  return withTimeout((signal) => new Promise<void>((resolve, reject) => {
    const req = request({ host, port, path, method: 'GET', signal, headers: { 'user-agent': 'berth-health' } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      if (code >= 200 && code < 400) resolve();
      else reject(new Error(`GET http://${host}:${port}${path} answered ${code}`));
    });
    req.once('error', (e) => reject(new Error(`GET http://${host}:${port}${path} failed: ${e.message}`)));
    req.end();
  }), timeoutMs, `GET http://${host}:${port}${path}`);
}

export class HealthMonitor {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;
  private readonly startedAt = Date.now();
  result: HealthResult = { health: 'starting', lastError: '' };

  constructor(
    private readonly spec: HealthSpec,
    private readonly prober: Prober,
    private readonly onChange: (r: HealthResult) => void,
  ) {}

  private get intervalMs(): number {
    return (this.spec.intervalSeconds || WORKLOAD_DEFAULTS.healthIntervalSeconds) * 1000;
  }

  private get timeoutMs(): number {
    return (this.spec.timeoutSeconds || WORKLOAD_DEFAULTS.healthTimeoutSeconds) * 1000;
  }

  private get threshold(): number {
    return this.spec.failureThreshold || WORKLOAD_DEFAULTS.healthFailureThreshold;
  }

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Runs one probe now (the periodic loop calls this). */
  async probe(): Promise<void> {
    const t = this.timeoutMs;
    if (this.spec.exec.length > 0) return this.prober.exec(this.spec.exec, t);
    const host = this.prober.address();
    if (host === undefined) throw new Error('the container has no network address to probe');
    if (this.spec.http) return httpProbe(host, this.spec.http.port, this.spec.http.path || WORKLOAD_DEFAULTS.httpPath, t);
    if (this.spec.tcp) return tcpProbe(host, this.spec.tcp.port, t);
    throw new Error('no health check configured');
  }

  private async tick(): Promise<void> {
    let error = '';
    try {
      await this.probe();
    } catch (err) {
      error = messageOf(err) || 'probe failed';
    }
    if (this.stopped) return;
    const before = this.result.health;
    if (error === '') {
      this.failures = 0;
      this.result = { health: 'healthy', lastError: '' };
    } else {
      const inStartPeriod = Date.now() - this.startedAt < this.spec.startPeriodSeconds * 1000;
      if (!inStartPeriod) this.failures += 1;
      const health: Health = this.failures >= this.threshold ? 'unhealthy' : before;
      this.result = { health, lastError: error };
    }
    if (this.result.health !== before) this.onChange(this.result);
    this.schedule();
  }
}
