import assert from 'node:assert/strict';
import { CancelledError, pause, sleep } from '../../lib/index.js';

describe('lib/timers', () => {
  it('sleep resolves after the wait when nothing aborts', async () => {
    await sleep(1, new AbortController().signal);
    await sleep(1);
  });

  it('sleep rejects with CancelledError carrying the given message when the signal aborts, or already has', async () => {
    const ac = new AbortController();
    const waiting = sleep(60_000, ac.signal, 'registration cancelled');
    ac.abort();
    await assert.rejects(waiting, (err: unknown) => err instanceof CancelledError && err.message === 'registration cancelled');
    await assert.rejects(sleep(60_000, ac.signal), (err: unknown) => err instanceof CancelledError && err.message === 'operation cancelled');
  });

  it('pause resolves early when the signal aborts, and at once when it already has', async () => {
    const ac = new AbortController();
    const waiting = pause(60_000, ac.signal);
    ac.abort();
    await waiting;
    await pause(60_000, ac.signal);
  });
});
