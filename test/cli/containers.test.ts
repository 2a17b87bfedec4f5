import assert from 'node:assert/strict';
import { commandText, containerStatusText, humanDuration, parsePsFilters, parseSince, parseTail } from '../../cli/containers.js';
import { describeWorkload } from '../../cli/cluster-verbs.js';
import type { Container } from '../../proto/gen/berth/v1/types.js';
import { cliInProcess } from './helpers.js';

function container(over: Partial<Container> & { state: number; exitCode?: number; started?: number; finished?: number }): Container {
  return {
    id: 'abcdef0123456789abcdef', name: 'c', node: 'n', workload: '', revision: 0, replica: 0, createdUnixMs: 1_000, desiredState: 3, updatedUnixMs: 0,
    spec: { image: 'busybox', entrypoint: [], command: ['sleep', '600'], env: {}, workingDir: '', user: '', ports: [], mounts: [], tty: false, stdin: false, hostname: '', labels: {}, autoRemove: false },
    status: { state: over.state, exitCode: over.exitCode ?? 0, reason: '', message: '', startedUnixMs: over.started ?? 0, finishedUnixMs: over.finished ?? 0, restartCount: 0, health: '', pid: 0, ipAddress: '', draining: false },
    ...over,
  };
}

describe('cli/containers', () => {
  it('writes docker-style durations when given elapsed milliseconds', () => {
    assert.equal(humanDuration(500), 'Less than a second');
    assert.equal(humanDuration(5_000), '5 seconds');
    assert.equal(humanDuration(70_000), 'About a minute');
    assert.equal(humanDuration(3 * 60_000), '3 minutes');
    assert.equal(humanDuration(3_600_000), 'About an hour');
    assert.equal(humanDuration(5 * 3_600_000), '5 hours');
    assert.equal(humanDuration(3 * 86_400_000), '3 days');
  });

  it('writes Up and Exited statuses like docker ps when a container runs or has exited', () => {
    assert.equal(containerStatusText(container({ state: 3, started: 0 }), 181_000), 'Up 3 minutes');
    assert.equal(containerStatusText(container({ state: 4, exitCode: 137, finished: 1_000 }), 6_000), 'Exited (137) 5 seconds ago');
    assert.equal(containerStatusText(container({ state: 2 })), 'Created');
  });

  it('quotes and cuts the command at 20 characters when it is long', () => {
    assert.equal(commandText(container({ state: 3 })), '"sleep 600"');
    const long = container({ state: 3 });
    if (long.spec) long.spec.command = ['sh', '-c', 'while true; do echo hi; done'];
    assert.equal(commandText(long), '"sh -c while true; d…"');
  });

  it('rejects unknown filter keys and statuses naming --filter', () => {
    assert.deepEqual(parsePsFilters(['status=running', 'label=app=web', 'node=n1']), { status: ['running'], label: { app: 'web' }, node: ['n1'] });
    assert.throws(() => parsePsFilters(['color=red']), /--filter: unknown key "color"/);
    assert.throws(() => parsePsFilters(['status=sleeping']), /--filter status: expected one of/);
  });

  it('parses --since durations and times and --tail counts, and rejects anything else', () => {
    assert.equal(parseSince('10m', 1_000_000), 400_000);
    assert.equal(parseSince('2026-01-02T00:00:00Z'), Date.parse('2026-01-02T00:00:00Z'));
    assert.throws(() => parseSince('yesterday'), /--since: expected a duration/);
    assert.equal(parseTail('20'), 20);
    assert.equal(parseTail('all'), 0);
    assert.throws(() => parseTail('-3'), /--tail: expected a number/);
  });

  it('describes a workload with no replicas or history as <none>', () => {
    const text = describeWorkload({ metadata: { name: 'web', labels: {}, uid: '', createdUnixMs: 0, updatedUnixMs: 0 } }, [], [], []);
    assert.match(text, /^Name:\s+web$/m);
    assert.match(text, /^Replicas per node:\n {2}<none>$/m);
  });

  for (const verb of [['ps'], ['logs'], ['rm'], ['run'], ['events'], ['node'], ['node', 'cordon'], ['node', 'uncordon'], ['node', 'drain'], ['describe', 'workload'], ['get', 'replicas']]) {
    it(`prints usage and examples and exits 0 when given "${verb.join(' ')} --help"`, async () => {
      const r = await cliInProcess([...verb, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: berth ${verb.join(' ')}`));
      assert.match(r.stdout, /Example/);
    });
  }

  it('exits 2 naming the flag when run gets a bad value, without contacting a controller', async () => {
    const r = await cliInProcess(['--controller', '127.0.0.1:1', 'run', '-d', '--restart', 'sometimes', 'busybox']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'error: --restart: expected one of always, on-failure, never, got "sometimes"\n');
  });
});

describe('cli/run separateRunCommand', () => {
  it('inserts "--" after IMAGE so the command keeps its dashes when run gets a command', async () => {
    const { separateRunCommand } = await import('../../cli/run.js');
    assert.deepEqual(separateRunCommand(['run', '-d', '--name', 'x', '-m', '64Mi', 'busybox', 'sh', '-c', 'ls -l']), ['run', '-d', '--name', 'x', '-m', '64Mi', 'busybox', '--', 'sh', '-c', 'ls -l']);
    assert.deepEqual(separateRunCommand(['--controller', 'h:1', 'run', 'busybox', '-x']), ['--controller', 'h:1', 'run', 'busybox', '--', '-x']);
    assert.deepEqual(separateRunCommand(['run', 'busybox', '--', 'ls']), ['run', 'busybox', '--', 'ls']);
    assert.deepEqual(separateRunCommand(['run', '-d', 'busybox']), ['run', '-d', 'busybox']);
    assert.deepEqual(separateRunCommand(['ps', '-a', 'x', '-q']), ['ps', '-a', 'x', '-q']);
  });
});

describe('cli/containers writePrefixedLogLine', () => {
  it('prefixes every line with the replica name when a chunk holds several lines', async () => {
    const { PassThrough, Readable } = await import('node:stream');
    const { makeContext } = await import('../../cli/context.js');
    const { writePrefixedLogLine } = await import('../../cli/containers.js');
    const stdout = new PassThrough();
    const chunks: Buffer[] = [];
    stdout.on('data', (c: Buffer) => chunks.push(c));
    const ctx = makeContext({ stdout, stderr: new PassThrough(), stdin: Readable.from(['']), env: {} }, {});
    writePrefixedLogLine(ctx, { unixMs: 0, stream: 'stdout', data: Buffer.from('a\nb\n'), source: '' }, false, 'web-0');
    await new Promise((r) => setImmediate(r));
    assert.equal(Buffer.concat(chunks).toString(), '[web-0] a\n[web-0] b\n');
  });
});
