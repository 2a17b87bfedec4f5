import assert from 'node:assert/strict';
import { mountDestinationProblem, mountProblems, parseVolumeFlag, volumeNameProblem, volumeNames } from '../../lib/index.js';

describe('lib/volumes', () => {
  it('parses -v values into volume and bind mounts when they are well formed', () => {
    assert.deepEqual(parseVolumeFlag('data:/data'), { type: 'volume', source: 'data', destination: '/data', readOnly: false });
    assert.deepEqual(parseVolumeFlag('data:/data:ro'), { type: 'volume', source: 'data', destination: '/data', readOnly: true });
    assert.deepEqual(parseVolumeFlag('/srv/x:/x:rw'), { type: 'bind', source: '/srv/x', destination: '/x', readOnly: false });
  });

  const bad: Array<[string, RegExp]> = [
    ['data', /expected NAME:\/path\[:ro\] or \/host\/path:\/path\[:ro\], got "data"/],
    ['a:b:c:d', /expected NAME:\/path/],
    [':/data', /expected a volume name or a host path before ":"/],
    ['data:/data:rx', /expected the mode "ro" or "rw" after the second ":", got "rx"/],
    ['data:rel', /destination: expected an absolute path/],
    ['-bad:/d', /volume: expected a volume name/],
    ['/srv/../etc:/d', /host path: expected a path without "\." or "\.\." components/],
    ['data:/sys/fs', /outside \/sys/],
    ['data:/etc/hosts', /other than \/etc\/hosts/],
  ];
  for (const [value, message] of bad) {
    it(`refuses -v "${value}" naming the flag`, () => {
      assert.throws(() => parseVolumeFlag(value, '-v, --volume'), (err: Error & { field?: string }) => {
        assert.match(err.message, /^-v, --volume: /);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('checks names: letters, digits, "_", "." and "-", at most 64, starting with a letter or digit', () => {
    assert.equal(volumeNameProblem('pg_data-1.0'), undefined);
    assert.equal(volumeNameProblem('a'.repeat(64)), undefined);
    assert.ok(volumeNameProblem('a'.repeat(65)));
    assert.ok(volumeNameProblem('.hidden'));
    assert.ok(volumeNameProblem('a/b'));
    assert.ok(volumeNameProblem(''));
  });

  it('lists every mount problem with its field path when several mounts are bad', () => {
    const problems = mountProblems([
      { type: 'volume', source: 'ok', destination: '/a', readOnly: false },
      { type: 'tmpfs', source: 'x', destination: '/b', readOnly: false },
      { type: 'bind', source: 'rel', destination: '/a/', readOnly: false },
    ]);
    assert.deepEqual(problems.map((p) => p.path), ['spec.mounts[1].type', 'spec.mounts[2].source', 'spec.mounts[2].destination']);
    assert.match(problems[2]?.message ?? '', /also the destination of spec\.mounts\[0\]/);
  });

  it('accepts nested destinations and names each volume once when listing names', () => {
    assert.equal(mountDestinationProblem('/data/sub'), undefined);
    assert.deepEqual(volumeNames([
      { type: 'volume', source: 'a', destination: '/a', readOnly: false },
      { type: 'bind', source: '/srv', destination: '/b', readOnly: false },
      { type: 'volume', source: 'a', destination: '/c', readOnly: true },
    ]), ['a']);
  });
});
