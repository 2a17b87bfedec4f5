/**
 * The one way the controller opens a NATS connection: retry every second while
 * NATS is unreachable until it works or `signal` aborts, and close
 * connections gracefully. Heartbeats, the event publisher and every
 * subscription of checked messages (ParsedSubscription: container reports,
 * node metrics and traffic, activations) use it.
 */
import { connect, type NatsConnection } from 'nats';
import { UnavailableError, messageOf, pause, silentLogger, type Logger } from '../../lib/index.js';

/** A message that passed its checks, or the reason it is dropped. */
export type Parsed<T> = T | string;

export interface ConnectOptions {
  servers: string[];
  /** Connection name shown by the NATS server's monitoring. */
  name: string;
  logger: Logger;
  /** Aborting stops retrying; connect then resolves undefined. */
  signal: AbortSignal;
}

/** Resolves a connection, or undefined when `signal` aborted first (nothing left open). */
export async function connectWithRetry(opts: ConnectOptions): Promise<NatsConnection | undefined> {
  let failures = 0;
  while (!opts.signal.aborted) {
    try {
      // No waitOnFirstConnect: its retries cannot be cancelled, which would keep a stopped process alive.
      const nc = await connect({
        servers: opts.servers,
        name: opts.name,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        timeout: 3000,
      });
      if (opts.signal.aborted) {
        await nc.close().catch(() => undefined);
        return undefined;
      }
      return nc;
    } catch (err) {
      const e = new UnavailableError(`failed to reach NATS at ${opts.servers.map((s) => `"${s}"`).join(', ')}: ${messageOf(err)}`, { cause: err });
      if (failures++ === 0) opts.logger.warn('NATS not reachable yet; retrying', { error: e.message });
      else opts.logger.debug('NATS not reachable yet; retrying', { error: e.message });
      await pause(1000, opts.signal);
    }
  }
  return undefined;
}

/** Drains a connection (delivering what is in flight), falling back to close. */
export async function closeGracefully(nc: NatsConnection | undefined): Promise<void> {
  if (!nc) return;
  try {
    await nc.drain();
  } catch {
    await nc.close().catch(() => undefined);
  }
}

/**
 * Subscribes to `subject` and hands each message that `parse` accepts to
 * `deliver`; a message `parse` refuses (a string reason) is dropped, counted
 * through `onDrop` and logged at debug. `what` names the messages in logs.
 */
export function subscribeParsed<T>(
  nc: NatsConnection,
  subject: string,
  opts: { what: string; logger: Logger; parse: (subject: string, data: Uint8Array) => Parsed<T>; deliver: (msg: T) => void; onDrop: () => void },
): void {
  nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) {
        opts.logger.warn(`${opts.what} subscription error`, { error: messageOf(err) });
        return;
      }
      const parsed = opts.parse(msg.subject, msg.data);
      if (typeof parsed === 'string') {
        opts.onDrop();
        opts.logger.debug(`${opts.what} dropped`, { subject: msg.subject, reason: parsed });
        return;
      }
      opts.deliver(parsed);
    },
  });
}

export interface ParsedSubscriptionOptions<T> {
  servers: string[];
  /** The subject (usually a wildcard) to subscribe to. */
  subject: string;
  /** Names the messages in logs ("node metrics"). */
  what: string;
  /** The logger component ("node-metrics"). */
  component: string;
  /** The NATS connection name. */
  name: string;
  parse: (subject: string, data: Uint8Array) => Parsed<T>;
  /** Called with each accepted message and this controller's receipt time. */
  deliver: (msg: T, receivedMs: number) => void;
  logger?: Logger;
}

/**
 * One NATS connection of its own that subscribes to one subject of checked
 * messages (node metrics, traffic, activations, container reports): start()
 * connects (retrying every second until stop()) and subscribes, and resolves
 * once messages can arrive; `dropped` counts the refused ones.
 */
export class ParsedSubscription<T> {
  private nc: NatsConnection | undefined;
  protected readonly logger: Logger;
  private readonly abort = new AbortController();
  dropped = 0;

  constructor(private readonly sub: ParsedSubscriptionOptions<T>) {
    this.logger = (sub.logger ?? silentLogger()).child({ component: sub.component });
  }

  async start(): Promise<void> {
    this.nc = await connectWithRetry({ servers: this.sub.servers, name: this.sub.name, logger: this.logger, signal: this.abort.signal });
    const nc = this.nc;
    if (!nc) return;
    subscribeParsed(nc, this.sub.subject, {
      what: this.sub.what, logger: this.logger, parse: this.sub.parse,
      deliver: (m) => this.sub.deliver(m, Date.now()), onDrop: () => this.dropped++,
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
