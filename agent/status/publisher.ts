/**
 * The agent's NATS side: the only place on the agent that imports nats.
 *
 * Vocabulary (subjects are listed in docs/internals.md):
 * - heartbeat: a protobuf `Heartbeat` on `berth.v1.node.<node>.heartbeat`,
 *   sent every interval while the agent lives. `seq` counts up from 1 per
 *   agent process; `instance` is random per process, so a new value tells the
 *   controller the agent restarted.
 *
 * Lifecycle: `StatusPublisher.connect()` retries until NATS answers (or the
 * signal aborts); `startHeartbeats()` publishes one heartbeat at once and then
 * one per interval; while the connection is down, beats are skipped rather
 * than queued (a late heartbeat would claim liveness for a time that has
 * passed), and the client reconnects on its own. `close()` stops the beats and
 * drains the connection.
 */
import { randomBytes } from 'node:crypto';
import { connect, Events, type NatsConnection } from 'nats';
import { ContainerReport, Heartbeat } from '../../proto/gen/berth/v1/status.js';
import { NodeMetrics } from '../../proto/gen/berth/v1/metrics.js';
import { NodeTraffic } from '../../proto/gen/berth/v1/traffic.js';
import { PullProgress, type NodeResources } from '../../proto/gen/berth/v1/types.js';
import { activateSubject, encodeActivation, CancelledError, containersSubject, heartbeatSubject, messageOf, metricsSubject, pullSubject, sleep, trafficSubject, type Logger } from '../../lib/index.js';

export { heartbeatSubject, containersSubject, metricsSubject, pullSubject } from '../../lib/index.js';

export interface StatusPublisherOptions {
  /** NATS server URLs, e.g. ["nats://127.0.0.1:4222"]. */
  servers: string[];
  node: string;
  logger: Logger;
  signal?: AbortSignal;
  /** Delay between failed first connection attempts, doubling up to maxDelayMs. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

export interface HeartbeatOptions {
  intervalMs: number;
  capacity?: NodeResources;
  /** How many containers the node has now. */
  containers?: () => number;
}

export class StatusPublisher {
  /** Random per agent process (16 hex characters). */
  readonly instance = randomBytes(8).toString('hex');
  private seqNo = 0;
  private timer: NodeJS.Timeout | undefined;
  private connected = true;
  private closing = false;
  private readonly log: Logger;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly node: string,
    logger: Logger,
  ) {
    this.log = logger;
    void this.watchStatus();
  }

  /** Connects to NATS, retrying with a capped backoff until it answers or `signal` aborts. */
  static async connect(options: StatusPublisherOptions): Promise<StatusPublisher> {
    const log = options.logger.child({ component: 'status' });
    let delay = options.initialDelayMs ?? 250;
    const maxDelay = options.maxDelayMs ?? 5000;
    for (let attempt = 1; ; attempt++) {
      if (options.signal?.aborted) throw new CancelledError('connecting to NATS cancelled');
      try {
        const nc = await connect({
          servers: options.servers,
          name: `berth-agent ${options.node}`,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          timeout: 2000,
        });
        log.info('connected to NATS', { server: nc.getServer(), attempt });
        return new StatusPublisher(nc, options.node, log);
      } catch (err) {
        log.warn('NATS connection failed; retrying', { servers: options.servers.join(','), attempt, reason: messageOf(err), retryInMs: delay });
        await sleep(delay, options.signal, 'connecting to NATS cancelled');
        delay = Math.min(delay * 2, maxDelay);
      }
    }
  }

  /** Heartbeats published so far by this process. */
  get seq(): number {
    return this.seqNo;
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === Events.Disconnect) {
        if (this.connected && !this.closing) this.log.warn('lost the NATS connection; heartbeats paused', { server: String(s.data) });
        this.connected = false;
      } else if (s.type === Events.Reconnect) {
        this.connected = true;
        this.log.info('reconnected to NATS; heartbeats resumed', { server: String(s.data) });
        // Tell the controller at once rather than at the next tick.
        if (this.timer) this.beatNow();
      }
    }
  }

  private heartbeatOptions: HeartbeatOptions | undefined;

  /** Publishes a heartbeat now and then every `intervalMs`; calling it again changes the interval. */
  startHeartbeats(options: HeartbeatOptions): void {
    if (this.timer) clearInterval(this.timer);
    this.heartbeatOptions = options;
    this.beatNow();
    this.timer = setInterval(() => this.beatNow(), options.intervalMs);
  }

  private beatNow(): void {
    const opts = this.heartbeatOptions;
    if (!opts || !this.connected || this.closing || this.nc.isClosed()) return;
    this.seqNo += 1;
    const hb: Heartbeat = {
      node: this.node,
      unixMs: Date.now(),
      seq: this.seqNo,
      instance: this.instance,
      containers: opts.containers ? opts.containers() : 0,
      capacity: opts.capacity,
    };
    try {
      this.nc.publish(heartbeatSubject(this.node), Heartbeat.encode(hb).finish());
    } catch (err) {
      this.log.warn('failed to publish a heartbeat', { seq: this.seqNo, reason: messageOf(err) });
    }
  }

  /** The node this publisher speaks for. */
  get nodeName(): string {
    return this.node;
  }

  private publishRaw(subject: string, data: Uint8Array, what: string): boolean {
    if (this.closing || this.nc.isClosed()) return false;
    try {
      // While disconnected the client buffers what is published and sends it on reconnect.
      this.nc.publish(subject, data);
      return true;
    } catch (err) {
      this.log.warn('failed to publish', { what, reason: messageOf(err) });
      return false;
    }
  }

  /** Publishes a ContainerReport on `berth.v1.node.<node>.containers`. */
  publishContainerReport(report: ContainerReport): boolean {
    return this.publishRaw(containersSubject(this.node), ContainerReport.encode(report).finish(), 'container report');
  }

  /** Publishes a PullProgress on `berth.v1.node.<node>.pull` (callers throttle; see PullProgressThrottle). */
  publishPullProgress(progress: PullProgress): boolean {
    return this.publishRaw(pullSubject(this.node), PullProgress.encode(progress).finish(), 'pull progress');
  }

  /** Publishes a NodeMetrics on `berth.v1.node.<node>.metrics` (agent/metrics samples once a second). */
  publishMetrics(metrics: NodeMetrics): boolean {
    return this.publishRaw(metricsSubject(this.node), NodeMetrics.encode(metrics).finish(), 'metrics');
  }

  /** Publishes a NodeTraffic on `berth.v1.node.<node>.traffic` (agent/network TrafficMeter, every 2 s). */
  publishTraffic(traffic: NodeTraffic): boolean {
    return this.publishRaw(trafficSubject(this.node), NodeTraffic.encode(traffic).finish(), 'traffic');
  }

  /** Asks for a replica of scale-to-zero service `service` on `berth.v1.service.<service>.activate` (agent/network Activator). */
  publishActivation(service: string, held: number): boolean {
    return this.publishRaw(activateSubject(service), encodeActivation({ service, node: this.node, held }), 'activation');
  }

  /** Stops heartbeats (no more are published after this returns). */
  stopHeartbeats(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.heartbeatOptions = undefined;
  }

  /** Stops heartbeats and drains the connection (flushes what was published). Idempotent. */
  async close(): Promise<void> {
    this.stopHeartbeats();
    if (this.closing) {
      await this.nc.closed();
      return;
    }
    this.closing = true;
    if (this.nc.isClosed()) return;
    try {
      if (this.connected) await this.nc.drain();
      else await this.nc.close();
    } catch (err) {
      this.log.warn('failed to drain the NATS connection', { reason: messageOf(err) });
      await this.nc.close().catch(() => undefined);
    }
  }
}
