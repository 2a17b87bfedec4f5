/**
 * The parts of berth exec / attach / run -it that need no cluster: the
 * command-line rules (every word after the container is the command), flag
 * checks (usage errors, exit 2, before anything is sent), and help.
 */
import assert from 'node:assert/strict';
import { buildExecStart, separateExecCommand } from '../../cli/interactive.js';
import { makeContext, processIO } from '../../cli/context.js';
import { cliInProcess, cleanEnv } from './helpers.js';

describe('cli/interactive', () => {
  const ctx = makeContext({ ...processIO, env: { HOME_DIR: '/home/x' } }, {});

  it('gives every word after the container to the command when exec has flags of its own', () => {
    assert.deepEqual(separateExecCommand(['exec', '-it', 'box', 'ls', '-l']), ['exec', '-it', 'box', '--', 'ls', '-l']);
    assert.deepEqual(separateExecCommand(['--controller', 'h:1', 'exec', '-e', 'A=1', '-w', '/tmp', 'box', 'sh', '-c', 'x']), ['--controller', 'h:1', 'exec', '-e', 'A=1', '-w', '/tmp', 'box', '--', 'sh', '-c', 'x']);
    assert.deepEqual(separateExecCommand(['exec', 'box', '--', 'ls']), ['exec', 'box', '--', 'ls']);
    assert.deepEqual(separateExecCommand(['exec', 'box', 'ls']), ['exec', 'box', '--', 'ls']);
    assert.deepEqual(separateExecCommand(['exec', 'box']), ['exec', 'box']);
    assert.deepEqual(separateExecCommand(['run', 'busybox', 'ls', '-l']), ['run', 'busybox', 'ls', '-l']);
  });

  it('builds the exec start from the flags when they are valid', () => {
    const s = buildExecStart(ctx, { interactive: true, env: ['A=1', 'HOME_DIR', 'UNSET_ONE'], workdir: '/srv', user: 'nobody' }, ' box ', ['sh', '-c', 'echo hi']);
    assert.deepEqual(s, { container: 'box', command: ['sh', '-c', 'echo hi'], env: ['A=1', 'HOME_DIR=/home/x'], workingDir: '/srv', user: 'nobody', tty: false, stdin: true });
  });

  it('refuses bad exec flags with a message naming the flag', () => {
    assert.throws(() => buildExecStart(ctx, { env: ['1A=x'] }, 'box', ['true']), /^UsageError: -e, --env: expected KEY=VALUE with KEY made of letters, digits and "_", got "1A=x"$/);
    assert.throws(() => buildExecStart(ctx, { workdir: 'tmp' }, 'box', ['true']), /-w, --workdir: expected an absolute path inside the container, got "tmp"/);
    assert.throws(() => buildExecStart(ctx, {}, 'box', []), /COMMAND: expected a program to run/);
    assert.throws(() => buildExecStart(ctx, {}, ' ', ['true']), /CONTAINER: expected a container name or id/);
  });

  it('exits 2 without calling the controller when exec or attach is used wrongly', async () => {
    // Port 1 is never a controller: a call would fail with exit 1, not 2.
    const env = cleanEnv({ BERTH_CONTROLLER: '127.0.0.1:1' });
    const noCmd = await cliInProcess(['exec', 'box'], { env });
    assert.equal(noCmd.code, 2);
    const badEnv = await cliInProcess(['exec', '-e', '=x', 'box', 'true'], { env });
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /-e, --env: expected KEY=VALUE/);
    const noName = await cliInProcess(['attach'], { env });
    assert.equal(noName.code, 2);
  });

  it('documents exec and attach in --help', async () => {
    const exec = await cliInProcess(['exec', '--help']);
    assert.equal(exec.code, 0);
    for (const flag of ['-i, --interactive', '-t, --tty', '-e, --env', '-w, --workdir', '-u, --user']) assert.ok(exec.stdout.includes(flag), flag);
    const attach = await cliInProcess(['attach', '--help']);
    assert.equal(attach.code, 0);
    assert.match(attach.stdout, /--no-stdin/);
    const run = await cliInProcess(['run', '--help']);
    assert.match(run.stdout, /-t, --tty/);
    assert.match(run.stdout, /-i, --interactive/);
  });
});
