/**
 * The one way the controller opens a NATS connection: retry every second while
 * NATS is unreachable until it works or `signal` aborts, and close
 * connections gracefully. Heartbeats, container reports and the event
 * publisher all use it.
 */
import { connect, type NatsConnection } from 'nats';
import { UnavailableError, messageOf, pause, type Logger } from '../../lib/index.js';

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
