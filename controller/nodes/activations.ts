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
import { ACTIVATE_SUBJECT_WILDCARD, parseActivation, type Logger, type ServiceActivation } from '../../lib/index.js';
import { ParsedSubscription } from './connect.js';

export interface NatsActivationsOptions {
  servers: string[];
  /** Called with each accepted activation. */
  deliver: (a: ServiceActivation) => void;
  logger?: Logger;
  name?: string;
}

/** Subscribes to every service's activation subject. */
export class NatsActivations extends ParsedSubscription<ServiceActivation> {
  constructor(opts: NatsActivationsOptions) {
    super({
      servers: opts.servers, subject: ACTIVATE_SUBJECT_WILDCARD, what: 'activation', component: 'activations',
      name: opts.name ?? 'berth-controller-activations', parse: parseActivation, deliver: (a) => opts.deliver(a), ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }
}
