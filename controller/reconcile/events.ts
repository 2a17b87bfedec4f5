/**
 * EventRecorder: collects the reconciler's events and writes them in batches
 * (every FLUSH_INTERVAL_MS) to the store's bounded history, publishing each
 * on NATS too. Recording never blocks or fails the reconciler: a batch that
 * cannot be stored is logged and dropped.
 */
import { messageOf, silentLogger, type Logger } from '../../lib/index.js';
import type { Event } from '../../proto/gen/berth/v1/types.js';
import type { EventPublisher } from '../nodes/index.js';
import type { EventStore } from '../store/index.js';

export const FLUSH_INTERVAL_MS = 250;

export interface EventSink {
  emit(event: Omit<Event, 'unixMs'> & { unixMs?: number }): void;
}

export class EventRecorder implements EventSink {
  private buffer: Event[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly logger: Logger;

  constructor(private readonly opts: { store: EventStore; publisher?: EventPublisher; logger?: Logger; now?: () => number }) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'events' });
  }

  emit(event: Omit<Event, 'unixMs'> & { unixMs?: number }): void {
    const e: Event = { ...event, unixMs: event.unixMs ?? (this.opts.now ?? Date.now)() };
    this.buffer.push(e);
    this.opts.publisher?.publish(e);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_INTERVAL_MS);
  }

  /** Writes what is buffered; resolves when written (or dropped). */
  flush(): Promise<void> {
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = this.flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        await this.opts.store.appendEvents(batch);
      } catch (err) {
        this.logger.warn('failed to store events', { count: batch.length, error: messageOf(err) });
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
