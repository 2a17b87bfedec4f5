/**
 * Heartbeats from NATS: the only importer of `nats` in the controller. Agents
 * publish a protobuf Heartbeat on `berth.v1.node.<node>.heartbeat` (see
 * docs/internals.md). Messages that do not decode, or whose subject and body
 * disagree about the node name, are dropped and counted.
 */
import { connect, type NatsConnection } from 'nats';
import { UnavailableError, dnsLabelProblem, messageOf, silentLogger, type Logger } from '../../lib/index.js';
import { Heartbeat } from '../../proto/gen/berth/v1/status.js';

export const HEARTBEAT_SUBJECT_PREFIX = 'berth.v1.node.';
export const HEARTBEAT_SUBJECT_WILDCARD = 'berth.v1.node.*.heartbeat';
/** Largest heartbeat accepted, in bytes. */
export const MAX_HEARTBEAT_BYTES = 4096;

export function heartbeatSubject(node: string): string {
  return `${HEARTBEAT_SUBJECT_PREFIX}${node}.heartbeat`;
}

/** Where Membership gets heartbeats from. */
export interface HeartbeatSource {
  /** Begins delivering heartbeats to `onHeartbeat` (node name from the subject, decoded message). */
  start(onHeartbeat: (node: string, hb: Heartbeat) => void): Promise<void>;
  stop(): Promise<void>;
}

export interface NatsHeartbeatsOptions {
  servers: string[];
  logger?: Logger;
  name?: string;
}

/** Parses a heartbeat message; returns a reason string when it must be dropped. */
export function parseHeartbeat(subject: string, data: Uint8Array): { node: string; hb: Heartbeat } | string {
  const parts = subject.split('.');
  const node = parts[3] ?? '';
  if (parts.length !== 5 || dnsLabelProblem(node) !== undefined) return `subject "${subject}" does not name a valid node`;
  if (data.length > MAX_HEARTBEAT_BYTES) return `heartbeat of ${data.length} bytes; expected at most ${MAX_HEARTBEAT_BYTES}`;
  let hb: Heartbeat;
  try {
    hb = Heartbeat.decode(data);
  } catch (err) {
    return `heartbeat does not decode: ${messageOf(err)}`;
  }
  if (hb.node !== node) return `heartbeat names node "${hb.node}" on the subject of node "${node}"`;
  return { node, hb };
}

export class NatsHeartbeats implements HeartbeatSource {
  private nc: NatsConnection | undefined;
  private readonly logger: Logger;
  private stopped = false;
  private wake: (() => void) | undefined;
  dropped = 0;

  constructor(private readonly opts: NatsHeartbeatsOptions) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'heartbeats' });
  }

  /**
   * Connects (retrying every second until stop() while NATS is unreachable) and
   * subscribes. Resolves once heartbeats can arrive, or when stopped first.
   */
  async start(onHeartbeat: (node: string, hb: Heartbeat) => void): Promise<void> {
    let failures = 0;
    while (!this.stopped && !this.nc) {
      try {
        // No waitOnFirstConnect: its retries cannot be cancelled, which would keep a stopped process alive.
        this.nc = await connect({
          servers: this.opts.servers,
          name: this.opts.name ?? 'berth-controller',
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          timeout: 3000,
        });
      } catch (err) {
        const e = new UnavailableError(`failed to reach NATS at ${this.opts.servers.map((s) => `"${s}"`).join(', ')}: ${messageOf(err)}`, { cause: err });
        if (failures++ === 0) this.logger.warn('NATS not reachable yet; retrying', { error: e.message });
        else this.logger.debug('NATS not reachable yet; retrying', { error: e.message });
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 1000);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
    if (!this.nc) return;
    const nc = this.nc;
    if (this.stopped) {
      this.nc = undefined;
      await nc.close().catch(() => undefined);
      return;
    }
    (async () => {
      for await (const s of nc.status()) this.logger.info('nats connection status', { type: s.type, data: String(s.data) });
    })().catch(() => undefined);
    nc.subscribe(HEARTBEAT_SUBJECT_WILDCARD, {
      callback: (err, msg) => {
        if (err) {
          this.logger.warn('heartbeat subscription error', { error: messageOf(err) });
          return;
        }
        const parsed = parseHeartbeat(msg.subject, msg.data);
        if (typeof parsed === 'string') {
          this.dropped++;
          this.logger.debug('heartbeat dropped', { subject: msg.subject, reason: parsed });
          return;
        }
        onHeartbeat(parsed.node, parsed.hb);
      },
    });
    await nc.flush();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const nc = this.nc;
    this.nc = undefined;
    if (!nc) return;
    try {
      await nc.drain();
    } catch {
      await nc.close().catch(() => undefined);
    }
  }
}
