import assert from 'node:assert/strict';
import { MAX_SIGNAL, parseSignal } from '../../lib/index.js';

describe('lib/signals parseSignal', () => {
  it('reads names with or without SIG in any case, and numbers from 1 to 64, in their canonical spelling', () => {
    assert.deepEqual(parseSignal('KILL'), { spec: 'SIGKILL', number: 9 });
    assert.deepEqual(parseSignal(' sighup '), { spec: 'SIGHUP', number: 1 });
    assert.deepEqual(parseSignal('SIGUSR1'), { spec: 'SIGUSR1', number: 10 });
    assert.deepEqual(parseSignal('15'), { spec: '15', number: 15 });
    assert.deepEqual(parseSignal(String(MAX_SIGNAL)), { spec: '64', number: 64 });
  });

  it('names what is wrong and what was expected when the signal is unknown or out of range', () => {
    const problem = (raw: string): string => {
      const r = parseSignal(raw);
      assert.ok('problem' in r, `expected a problem for "${raw}"`);
      return r.problem;
    };
    assert.equal(problem('0'), 'expected a signal number from 1 to 64, got "0"');
    assert.match(problem('65'), /from 1 to 64, got "65"/);
    assert.match(problem('BOGUS'), /^unknown signal "BOGUS"; expected a name such as KILL, TERM/);
    assert.match(problem(''), /^unknown signal ""/);
    assert.match(problem('-9'), /^unknown signal "-9"/);
    assert.match(problem('__proto__'), /^unknown signal "__proto__"/);
    assert.match(problem('SIG'), /^unknown signal "SIG"/);
  });
});
