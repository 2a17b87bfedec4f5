/**
 * Image pull progress from agents (`berth.v1.node.<node>.pull`, PullProgress;
 * published while a RunContainer pulls a missing image, throttled by the
 * agent), for the clients that wait on that run: `berth run` shows it as
 * `berth pull` would (StreamService Attach with a `run` start).
 *
 * Hostile input like every report: the subject's node must be a DNS label
 * equal to the body's node; at most MAX_PULL_BYTES and MAX_PULL_LAYERS
 * layers. A message failing a check is dropped whole.
 *
 * PullWatchers is the registry: `watch(node, reference, fn)` until the run
 * returns; each accepted message goes to the watchers of its node and
 * reference.
 */
import { messageOf, nodeOfSubject, nodeSubjectWildcard, type Logger } from '../../lib/index.js';
import { PullProgress } from '../../proto/gen/berth/v1/types.js';
import { ParsedSubscription } from './connect.js';

export const PULL_SUBJECT_WILDCARD = nodeSubjectWildcard('pull');
export const MAX_PULL_BYTES = 256 * 1024;
export const MAX_PULL_LAYERS = 1000;

/** Parses and checks one message; returns a reason string when it must be dropped. */
export function parsePullProgress(subject: string, data: Uint8Array): PullProgress | string {
  const node = nodeOfSubject(subject, 'pull');
  if (node === undefined) return `subject "${subject}" does not name a valid node`;
  if (data.length > MAX_PULL_BYTES) return `pull progress of ${data.length} bytes; expected at most ${MAX_PULL_BYTES}`;
  let p: PullProgress;
  try {
    p = PullProgress.decode(data);
  } catch (err) {
    return `pull progress does not decode: ${messageOf(err)}`;
  }
  if (p.node !== node) return `pull progress names node "${p.node.slice(0, 80)}" on the subject of node "${node}"`;
  if (p.layers.length > MAX_PULL_LAYERS) return `pull progress lists ${p.layers.length} layers; expected at most ${MAX_PULL_LAYERS}`;
  return p;
}

/** Who waits for which node's pull of which reference. */
export class PullWatchers {
  private readonly watchers = new Map<string, Set<(p: PullProgress) => void>>();

  private static key(node: string, reference: string): string {
    return `${node}\n${reference}`;
  }

  /** Calls `fn` with each progress message of `node` pulling `reference` until the returned function is called. */
  watch(node: string, reference: string, fn: (p: PullProgress) => void): () => void {
    const k = PullWatchers.key(node, reference);
    const set = this.watchers.get(k) ?? new Set();
    set.add(fn);
    this.watchers.set(k, set);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.watchers.get(k) === set) this.watchers.delete(k);
    };
  }

  deliver(p: PullProgress): void {
    for (const fn of this.watchers.get(PullWatchers.key(p.node, p.reference)) ?? []) fn(p);
  }
}

export interface NatsPullProgressOptions {
  servers: string[];
  deliver: (p: PullProgress) => void;
  logger?: Logger;
  name?: string;
}

/** Subscribes to every node's pull progress. */
export class NatsPullProgress extends ParsedSubscription<PullProgress> {
  constructor(opts: NatsPullProgressOptions) {
    super({
      servers: opts.servers, subject: PULL_SUBJECT_WILDCARD, what: 'pull progress', component: 'pull-progress',
      name: opts.name ?? 'berth-controller-pulls', parse: parsePullProgress, deliver: (p) => opts.deliver(p), ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }
}
