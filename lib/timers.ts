/**
 * Waiting with cancellation, in the two shapes our loops need: `sleep`
 * rejects when the signal aborts (a caller that must stop), `pause` resolves
 * early (a loop that checks its own stop condition next).
 */
import { CancelledError } from './errors.js';

/** Waits `ms`; rejects with CancelledError(`cancelledMessage`) as soon as `signal` aborts (at once when it already has). */
export function sleep(ms: number, signal?: AbortSignal, cancelledMessage = 'operation cancelled'): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new CancelledError(cancelledMessage));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new CancelledError(cancelledMessage));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waits `ms`, or until `signal` aborts (at once when it already has); never rejects. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
