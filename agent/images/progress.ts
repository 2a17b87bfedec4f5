/**
 * Pull progress in its wire form (proto berth.v1.PullProgress), independent of
 * the transport: the agent API streams these messages to the controller and
 * the status publisher can put the same ones on NATS.
 *
 * Lifecycle: one message per progress report of the puller (byte counts at
 * most every 100 ms, every phase change at once), then exactly one last
 * message with `finished` set and either `digest` (success) or `error`.
 */
import { messageOf } from '../../lib/index.js';
import type { PullProgress } from '../../proto/gen/berth/v1/types.js';
import type { ImageRecord } from './records.js';
import type { ImageService } from './service.js';

export interface PullOutcome {
  record?: ImageRecord;
  error?: unknown;
}

/** Pulls `reference`, calling `emit` with each progress message and the final one. Never throws. */
export async function pullWithProgress(
  service: Pick<ImageService, 'pull'>,
  reference: string,
  node: string,
  emit: (message: PullProgress) => void,
  opts: { signal?: AbortSignal } = {},
): Promise<PullOutcome> {
  let last: PullProgress['layers'] = [];
  const send = (m: PullProgress): void => {
    try {
      emit(m);
    } catch {
      // a consumer that went away must not fail the pull
    }
  };
  try {
    const record = await service.pull(reference, {
      signal: opts.signal,
      onProgress: (layers) => {
        last = layers;
        send({ node, reference, layers, finished: false, error: '', digest: '' });
      },
    });
    send({ node, reference: record.reference, layers: last, finished: true, error: '', digest: record.digest });
    return { record };
  } catch (error) {
    send({ node, reference, layers: last, finished: true, error: messageOf(error), digest: '' });
    return { error };
  }
}
