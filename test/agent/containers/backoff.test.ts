import assert from 'node:assert/strict';
import { nextBackoff, shouldRestart } from '../../../agent/containers/index.js';

describe('restart backoff', () => {
  it('doubles from 1 s up to the cap while the container keeps failing quickly', () => {
    let streak = 0;
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      const b = nextBackoff(streak, 500, 20);
      delays.push(b.delayMs);
      streak = b.streak;
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000]);
  });

  it('starts again at 1 s when the last run lasted 10 s or more', () => {
    assert.deepEqual(nextBackoff(5, 10_000, 300), { delayMs: 1000, streak: 1 });
    assert.deepEqual(nextBackoff(5, 9_999, 300), { delayMs: 32000, streak: 6 });
  });

  it('uses a 300 s cap when the spec gives none', () => {
    assert.equal(nextBackoff(20, 0, 0).delayMs, 300_000);
  });

  it('restarts per policy', () => {
    assert.deepEqual(
      [shouldRestart('always', 0, false), shouldRestart('on-failure', 0, false), shouldRestart('on-failure', 1, false), shouldRestart('on-failure', 0, true), shouldRestart('never', 1, false), shouldRestart('', 1, false)],
      [true, false, true, true, false, false],
    );
  });
});
