import assert from 'node:assert/strict';
import { cpuTime, parseCopyArg, parseSeconds, statsBytes, statsTable } from '../../cli/container-verbs.js';
import { cliInProcess } from './helpers.js';

describe('cli container verbs (parsing and output, no cluster)', () => {
  it('tells CONTAINER:PATH from local paths as docker cp does', () => {
    assert.deepEqual(parseCopyArg('web:/etc/hosts'), { container: 'web', path: '/etc/hosts' });
    assert.deepEqual(parseCopyArg('web:etc/hosts'), { container: 'web', path: '/etc/hosts' });
    assert.deepEqual(parseCopyArg('3f2a9c:/'), { container: '3f2a9c', path: '/' });
    assert.equal(parseCopyArg('/tmp/a:b'), undefined);
    assert.equal(parseCopyArg('./a:b'), undefined);
    assert.equal(parseCopyArg('dir/a:b'), undefined);
    assert.equal(parseCopyArg('plain'), undefined);
    assert.equal(parseCopyArg('-'), undefined);
  });

  it('formats sizes, CPU time and the stats table as docker does', () => {
    assert.equal(statsBytes(0), '0B');
    assert.equal(statsBytes(512), '512B');
    assert.equal(statsBytes(1536 * 1024), '1.5MiB');
    assert.equal(statsBytes(256 * 1024 * 1024), '256MiB');
    assert.equal(statsBytes(7.667 * 1024 ** 3), '7.667GiB');
    assert.equal(cpuTime(0), '00:00:00');
    assert.equal(cpuTime(3_723_000), '01:02:03');
    const table = statsTable([
      { id: 'a'.repeat(64), name: 'busy', node: 'node-1', cpuUsageNs: 0, readUnixMs: 0, cpuPercent: 99.5, memoryUsageBytes: 1024 * 1024, memoryLimitBytes: 64 * 1024 * 1024, pids: 2, pidsLimit: 0, state: 'running' },
      { id: 'b'.repeat(64), name: 'idle', node: 'node-2', cpuUsageNs: 0, readUnixMs: 0, cpuPercent: 0, memoryUsageBytes: 0, memoryLimitBytes: 0, pids: 0, pidsLimit: 0, state: 'exited' },
    ]);
    assert.equal(table, [
      'CONTAINER ID   NAME   CPU %    MEM USAGE / LIMIT   MEM %   PIDS   NODE',
      'aaaaaaaaaaaa   busy   99.50%   1MiB / 64MiB        1.56%   2      node-1',
      'bbbbbbbbbbbb   idle   --       -- / --             --      --     node-2',
      '',
    ].join('\n'));
    assert.equal(parseSeconds('5', '-t'), 5);
    assert.throws(() => parseSeconds('soon', '-t, --time'), /-t, --time: expected whole seconds from 0 to 3600, got "soon"/);
  });

  it('refuses bad flag values with exit code 2 before calling the controller', async () => {
    // Port 9 (discard) on loopback: a call would fail with exit 1, so exit 2 proves nothing was called.
    const env = { BERTH_CONTROLLER: '127.0.0.1:9' };
    for (const [args, message] of [
      [['update', '--cpus', '-1', 'web'], /^error: --cpus: .*"-1"/],
      [['update', '-m', '12XB', 'web'], /^error: -m, --memory: .*"12XB"/],
      [['update', '--pids-limit', '0', 'web'], /^error: --pids-limit: expected at least 1 process/],
      [['update', '--pids', '5', '--pids-limit', '5', 'web'], /same flag/],
      [['kill', '-s', 'NOPE', 'web'], /^error: -s, --signal: unknown signal "NOPE"/],
      [['restart', '-t', '-1', 'web'], /^error: -t, --time: /],
      [['stats', '--format', 'yaml'], /^error: --format: expected "table" or "json", got "yaml"/],
      [['inspect', '-f', '{{.Name}}', 'web'], /^error: -f, --format: expected "json"/],
      [['cp', 'a', 'b'], /^error: expected one of SRC and DEST to be CONTAINER:PATH/],
      [['cp', 'x:/a', 'y:/b'], /^error: copying between two containers is not supported/],
      [['rename', 'web', ''], /^error: NEW_NAME: expected a container name/],
    ] as const) {
      const r = await cliInProcess([...args], { env });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    const missing = await cliInProcess(['wait'], { env });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required argument 'containers'/);
  });
});
