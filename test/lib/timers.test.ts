import assert from 'node:assert/strict';
import { CancelledError, pause, sleep } from '../../lib/index.js';

/** 'settled' when `p` settles before the next turn of the event loop, else 'pending' (no clock involved). */
const settledNow = (p: Promise<unknown>): Promise<string> =>
  Promise.race([p.then(() => 'settled', () => 'settled'), new Promise<string>((r) => setImmediate(() => r('pending')))]);

describe('lib/timers', () => {
  it('sleep resolves after the wait when nothing aborts', async () => {
    assert.equal(await sleep(1, new AbortController().signal), undefined);
    assert.equal(await sleep(1), undefined);
  });

  it('sleep rejects with CancelledError carrying the given message when the signal aborts, or already has', async () => {
    const ac = new AbortController();
    const waiting = sleep(60_000, ac.signal, 'registration cancelled');
    assert.equal(await settledNow(waiting), 'pending');
    ac.abort();
    await assert.rejects(waiting, (err: unknown) => err instanceof CancelledError && err.message === 'registration cancelled');
    await assert.rejects(sleep(60_000, ac.signal), (err: unknown) => err instanceof CancelledError && err.message === 'operation cancelled');
  });

  it('pause resolves as soon as the signal aborts, and at once when it already has', async () => {
    const ac = new AbortController();
    const waiting = pause(60_000, ac.signal);
    assert.equal(await settledNow(waiting), 'pending');
    ac.abort();
    assert.equal(await settledNow(waiting), 'settled');
    assert.equal(await settledNow(pause(60_000, ac.signal)), 'settled');
  });
});
