/**
 * Heartbeats from NATS: the only importer of `nats` in the controller. Agents
 * publish a protobuf Heartbeat on `berth.v1.node.<node>.heartbeat` (see
 * docs/internals.md). Messages that do not decode, or whose subject and body
 * disagree about the node name, are dropped and counted.
 */
import type { NatsConnection } from 'nats';
import { HEARTBEAT_SUBJECT_WILDCARD, messageOf, nodeOfSubject, silentLogger, type Logger } from '../../lib/index.js';
import { closeGracefully, connectWithRetry, subscribeParsed } from './connect.js';
import { Heartbeat } from '../../proto/gen/berth/v1/status.js';

export { heartbeatSubject, HEARTBEAT_SUBJECT_WILDCARD } from '../../lib/index.js';
/** Largest heartbeat accepted, in bytes. */
export const MAX_HEARTBEAT_BYTES = 4096;

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
  const node = nodeOfSubject(subject, 'heartbeat');
  if (node === undefined) return `subject "${subject}" does not name a valid node`;
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
  private readonly abort = new AbortController();
  dropped = 0;

  constructor(private readonly opts: NatsHeartbeatsOptions) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'heartbeats' });
  }

  /**
   * Connects (retrying every second until stop() while NATS is unreachable) and
   * subscribes. Resolves once heartbeats can arrive, or when stopped first.
   */
  async start(onHeartbeat: (node: string, hb: Heartbeat) => void): Promise<void> {
    this.nc = await connectWithRetry({
      servers: this.opts.servers,
      name: this.opts.name ?? 'berth-controller',
      logger: this.logger,
      signal: this.abort.signal,
    });
    const nc = this.nc;
    if (!nc) return;
    (async () => {
      for await (const s of nc.status()) this.logger.info('nats connection status', { type: s.type, data: String(s.data) });
    })().catch(() => undefined);
    subscribeParsed(nc, HEARTBEAT_SUBJECT_WILDCARD, {
      what: 'heartbeat', logger: this.logger, parse: parseHeartbeat,
      deliver: (p) => onHeartbeat(p.node, p.hb), onDrop: () => this.dropped++,
    });
    await nc.flush();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    const nc = this.nc;
    this.nc = undefined;
    await closeGracefully(nc);
  }
}
