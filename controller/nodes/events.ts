/**
 * Publishes controller events on NATS (`berth.v1.events`, protobuf Event; see
 * docs/internals.md) for anyone following the cluster live. Publishing is
 * best effort: while NATS is unreachable events are only stored in etcd.
 */
import type { NatsConnection } from 'nats';
import { closeGracefully, connectWithRetry } from './connect.js';
import { EVENTS_SUBJECT, messageOf, silentLogger, type Logger } from '../../lib/index.js';
import { Event } from '../../proto/gen/berth/v1/types.js';

export { EVENTS_SUBJECT } from '../../lib/index.js';

export interface EventPublisher {
  publish(event: Event): void;
}

export class NatsEventPublisher implements EventPublisher {
  private nc: NatsConnection | undefined;
  private readonly abort = new AbortController();
  private readonly logger: Logger;

  constructor(private readonly opts: { servers: string[]; logger?: Logger; name?: string }) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'event-publisher' });
  }

  /** Connects, retrying every second until it works or stop() is called. */
  async start(): Promise<void> {
    this.nc = await connectWithRetry({
      servers: this.opts.servers,
      name: this.opts.name ?? 'berth-controller-events',
      logger: this.logger,
      signal: this.abort.signal,
    });
  }

  publish(event: Event): void {
    if (!this.nc || this.abort.signal.aborted) return;
    try {
      this.nc.publish(EVENTS_SUBJECT, Event.encode(event).finish());
    } catch (err) {
      this.logger.debug('failed to publish an event', { error: messageOf(err) });
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    const nc = this.nc;
    this.nc = undefined;
    await closeGracefully(nc);
  }
}
