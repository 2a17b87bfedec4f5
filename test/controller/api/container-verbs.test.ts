import assert from 'node:assert/strict';
import { checkSignal } from '../../../controller/api/container-verbs.js';
import { resolveContainer } from '../../../controller/api/containers.js';
import { Container } from '../../../proto/gen/berth/v1/types.js';

function container(id: string, name: string): Container {
  return { ...Container.fromJSON({}), id, name };
}

describe('controller/api container verbs', () => {
  it('accepts signal names with or without SIG and numbers 1..64, refusing anything else by name', () => {
    assert.equal(checkSignal('KILL'), 'SIGKILL');
    assert.equal(checkSignal('sighup'), 'SIGHUP');
    assert.equal(checkSignal(''), 'SIGKILL');
    assert.equal(checkSignal('15'), '15');
    assert.throws(() => checkSignal('BOGUS'), /^InvalidArgumentError: signal: unknown signal "BOGUS"; expected a name such as KILL/);
    assert.throws(() => checkSignal('0'), /signal: expected a signal number from 1 to 64, got "0"/);
    assert.throws(() => checkSignal('65'), /from 1 to 64/);
    assert.throws(() => checkSignal('-9'), /unknown signal/);
  });

  it('resolves names and unambiguous id prefixes, and lists the candidates of an ambiguous prefix', () => {
    const all = [
      container('abcd1111'.padEnd(64, '0'), 'web'),
      container('abcd2222'.padEnd(64, '0'), 'db'),
      container('ffff0000'.padEnd(64, '0'), 'abcd'),
    ];
    assert.equal(resolveContainer(all, 'web', 'container').name, 'web');
    assert.equal(resolveContainer(all, 'abcd2', 'container').name, 'db');
    // A name wins over an id prefix that happens to spell it.
    assert.equal(resolveContainer(all, 'abcd', 'container').name, 'abcd');
    assert.throws(() => resolveContainer(all.slice(0, 2), 'abcd', 'containers[0]'),
      /^InvalidArgumentError: containers\[0\]: id prefix "abcd" matches 2 containers \("web", "db"\); expected a longer prefix/);
    assert.throws(() => resolveContainer(all, 'nope', 'container'), /container "nope" not found/);
    assert.throws(() => resolveContainer(all, '', 'container'), /expected a container name or id, got nothing/);
  });
});
