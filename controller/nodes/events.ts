/**
 * Publishes controller events on NATS (`berth.v1.events`, protobuf Event; see
 * docs/internals.md) for anyone following the cluster live. Publishing is
 * best effort: while NATS is unreachable events are only stored in etcd.
 */
import { connect, type NatsConnection } from 'nats';
import { messageOf, silentLogger, type Logger } from '../../lib/index.js';
import { Event } from '../../proto/gen/berth/v1/types.js';

export const EVENTS_SUBJECT = 'berth.v1.events';

export interface EventPublisher {
  publish(event: Event): void;
}

export class NatsEventPublisher implements EventPublisher {
  private nc: NatsConnection | undefined;
  private stopped = false;
  private readonly logger: Logger;

  constructor(private readonly opts: { servers: string[]; logger?: Logger; name?: string }) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'event-publisher' });
  }

  /** Connects, retrying every second until it works or stop() is called. */
  async start(): Promise<void> {
    while (!this.stopped && !this.nc) {
      try {
        this.nc = await connect({ servers: this.opts.servers, name: this.opts.name ?? 'berth-controller-events', reconnect: true, maxReconnectAttempts: -1, reconnectTimeWait: 500, timeout: 3000 });
      } catch (err) {
        this.logger.debug('NATS not reachable yet; retrying', { error: messageOf(err) });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    if (this.stopped && this.nc) await this.stop();
  }

  publish(event: Event): void {
    if (!this.nc || this.stopped) return;
    try {
      this.nc.publish(EVENTS_SUBJECT, Event.encode(event).finish());
    } catch (err) {
      this.logger.debug('failed to publish an event', { error: messageOf(err) });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const nc = this.nc;
    this.nc = undefined;
    if (!nc) return;
    await nc.drain().catch(() => nc.close().catch(() => undefined));
  }
}
