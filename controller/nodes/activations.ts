/**
 * Scale-from-zero requests from agents (`berth.v1.service.<name>.activate`,
 * JSON ServiceActivation, lib/subjects.ts): an agent holds a connection for a
 * service at zero replicas and asks for one, then repeats every second while
 * it holds or forwards connections for it. Every controller subscribes; the
 * receiver (the LeaderAutoscaler) acts only while leading.
 *
 * Hostile input like every message: a subject naming a valid service, at
 * most MAX_ACTIVATION_BYTES, a version this controller knows, the body's
 * service equal to the subject's. Anything else is dropped whole.
 */
import type { NatsConnection } from 'nats';
import { ACTIVATE_SUBJECT_WILDCARD, parseActivation, silentLogger, type Logger, type ServiceActivation } from '../../lib/index.js';
import { closeGracefully, connectWithRetry, subscribeParsed } from './connect.js';

export interface NatsActivationsOptions {
  servers: string[];
  /** Called with each accepted activation. */
  deliver: (a: ServiceActivation) => void;
  logger?: Logger;
  name?: string;
}

/** Subscribes to every service's activation subject. */
export class NatsActivations {
  private nc: NatsConnection | undefined;
  private readonly logger: Logger;
  private readonly abort = new AbortController();
  dropped = 0;

  constructor(private readonly opts: NatsActivationsOptions) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'activations' });
  }

  /** Connects (retrying every second until stop()) and subscribes; resolves once activations can arrive. */
  async start(): Promise<void> {
    this.nc = await connectWithRetry({ servers: this.opts.servers, name: this.opts.name ?? 'berth-controller-activations', logger: this.logger, signal: this.abort.signal });
    const nc = this.nc;
    if (!nc) return;
    subscribeParsed(nc, ACTIVATE_SUBJECT_WILDCARD, {
      what: 'activation', logger: this.logger, parse: parseActivation,
      deliver: (a) => this.opts.deliver(a), onDrop: () => this.dropped++,
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
