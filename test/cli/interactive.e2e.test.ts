/**
 * berth run -it, exec and attach end to end through a real pty (node-pty):
 * CLI -> controller StreamService -> agent AgentStreamService -> runtime
 * (attach socket of the shim, helper exec), with real etcd, NATS, registry,
 * controller, agent and containers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { credentials } from '@grpc/grpc-js';
import { StreamServiceClient } from '../../proto/gen/berth/v1/streams.js';
import { startRegistryWithImages, waitFor, type RegistryWithImages } from '../harness/index.js';
import { BERTH_JS, cleanEnv } from './helpers.js';
import { startCluster, type TestCluster } from './cluster.js';
import { berthInPty, type PtySession } from './pty.js';

/** busybox sh's prompt (it may ask the terminal for the cursor position after it). */
const PROMPT = /# (?:\x1b\[6n)?$/;

interface ContainerJson {
  id: string;
  name: string;
  status?: { state?: string; exitCode?: number };
}

describe('cli interactive verbs end to end (run -it, exec, attach through a pty)', function () {
  this.timeout(180_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let image = '';
  const sessions: PtySession[] = [];

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    assert.ok(image, 'busybox was pushed');
    cluster = await startCluster();
    await cluster.startReadyAgent('node-1');
  });

  afterEach(() => {
    for (const s of sessions.splice(0)) s.kill();
  });

  after(async () => {
    // Stops agents, controller, NATS and etcd, then removes the agents' containers and roots.
    await cluster?.stop();
    await reg?.stop();
  });

  function cli(args: string[], stdin?: string): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args, stdin !== undefined ? { stdin } : {});
  }

  function pty(args: string[], size: { cols?: number; rows?: number } = {}): PtySession {
    if (!cluster) throw new Error('no cluster');
    const s = berthInPty(args, { controller: cluster.address, ...size });
    sessions.push(s);
    return s;
  }

  async function ps(): Promise<ContainerJson[]> {
    const r = await cli(['ps', '-a', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ContainerJson[];
  }

  async function state(name: string): Promise<string | undefined> {
    return (await ps()).find((c) => c.name === name)?.status?.state;
  }

  it('gives run -it a shell on a pty whose hostname is the container name, follows the window size and passes exit 3 back', async () => {
    const s = pty(['run', '-it', '--name', 'tty-box', image, 'sh'], { cols: 100, rows: 30 });
    let at = await s.expect(PROMPT);
    s.type('hostname\r');
    at = await s.expect(/\r\ntty-box\r\n/, { from: at });
    // The container's terminal starts at this terminal's size ...
    s.type('stty size\r');
    at = await s.expect(/\r\n30 100\r\n/, { from: at });
    // ... and follows it (SIGWINCH -> resize).
    s.resize(120, 40);
    await waitFor('the new size inside the container', async () => {
      const mark = s.output.length;
      s.type('stty size\r');
      try {
        at = await s.expect(/\r\n(\d+ \d+)\r\n/, { from: mark, timeoutMs: 5000 });
      } catch {
        return false;
      }
      return /40 120\r\n$/.test(s.output.slice(0, at));
    }, 20_000, 200);
    // Input is a real terminal's: a tty on stdin inside.
    s.type('tty\r');
    at = await s.expect(/\/dev\/pts\/\d+\r\n/, { from: at });
    s.type('exit 3\r');
    assert.equal(await s.exited(), 3, s.output);
    await waitFor('tty-box to show as exited', async () => (await state('tty-box')) === 'CONTAINER_STATE_EXITED', 20_000, 250);
    const row = (await ps()).find((c) => c.name === 'tty-box');
    assert.equal(row?.status?.exitCode, 3);
  });

  it('ends run -it --rm on Ctrl-D with exit code 0 and removes the container', async () => {
    const s = pty(['run', '-it', '--rm', '--name', 'tty-rm', image, 'sh']);
    const at = await s.expect(PROMPT);
    s.type('echo $((6*7))\r');
    const after = await s.expect(/\r\n42\r\n/, { from: at });
    // Ctrl-D ends the shell when it reads a new line (typed earlier, the terminal would swallow it).
    await s.expect(PROMPT, { from: after });
    s.type('\x04');
    assert.equal(await s.exited(), 0, s.output);
    assert.equal((await ps()).some((c) => c.name === 'tty-rm'), false, 'removed with --rm');
  });

  it('shows every line of run -t output (no input) and exits with the command\'s code', async () => {
    const s = pty(['run', '-t', '--rm', image, 'sh', '-c', 'echo first; echo second; exit 6']);
    await s.expect(/first\r\nsecond\r\n/);
    assert.equal(await s.exited(), 6, s.output);
  });

  it('runs exec without a terminal: output on stdout and stderr, stdin with -i, env/workdir/user, and the exit code', async () => {
    const run = await cli(['run', '-d', '--name', 'ex-box', image, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('ex-box to run', async () => (await state('ex-box')) === 'CONTAINER_STATE_RUNNING', 30_000, 250);

    const r = await cli(['exec', 'ex-box', 'sh', '-c', 'echo out; echo err >&2; exit 5']);
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');

    const cat = await cli(['exec', '-i', 'ex-box', 'sh', '-c', 'tr a-z A-Z; echo done'], 'hello\nworld\n');
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, 'HELLO\nWORLD\ndone\n');

    // Without -i the process's input is empty.
    const noInput = await cli(['exec', 'ex-box', 'cat'], 'ignored');
    assert.equal(noInput.code, 0, noInput.stderr);
    assert.equal(noInput.stdout, '');

    const opts = await cli(['exec', '-e', 'GREETING=hi there', '-w', '/tmp', '-u', '65534', 'ex-box', 'sh', '-c', 'echo "$GREETING|$(pwd)|$(id -u)"']);
    assert.equal(opts.code, 0, opts.stderr);
    assert.equal(opts.stdout, 'hi there|/tmp|65534\n');

    // It runs in the container's pid namespace: pid 1 is the container's sleep.
    const pid1 = await cli(['exec', 'ex-box', 'cat', '/proc/1/cmdline']);
    assert.equal(pid1.stdout.replace(/\0/g, ' ').trim(), 'sleep 600');

    // An id prefix names the container too.
    const id = run.stdout.trim();
    const byId = await cli(['exec', id.slice(0, 12), 'hostname']);
    assert.equal(byId.code, 0, byId.stderr);
    assert.equal(byId.stdout, 'ex-box\n');

    const missing = await cli(['exec', 'ex-box', 'no-such-program']);
    assert.equal(missing.code, 127, missing.stderr);
    assert.match(missing.stderr, /no-such-program/);
  });

  it('gives exec -it a shell on a pty in the container that follows the window size and passes its exit code back', async () => {
    const run = await cli(['run', '-d', '--name', 'ex-tty', image, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('ex-tty to run', async () => (await state('ex-tty')) === 'CONTAINER_STATE_RUNNING', 30_000, 250);
    const s = pty(['exec', '-it', 'ex-tty', 'sh'], { cols: 90, rows: 25 });
    const at = await s.expect(PROMPT);
    s.type('hostname; tty; stty size\r');
    let after = await s.expect(/\r\nex-tty\r\n\/dev\/pts\/\d+\r\n25 90\r\n/, { from: at });
    // The exec'd process's terminal follows this one too.
    s.resize(110, 35);
    await waitFor('the new size inside the exec', async () => {
      const mark = s.output.length;
      s.type('stty size\r');
      try {
        after = await s.expect(/\r\n(\d+ \d+)\r\n/, { from: mark, timeoutMs: 5000 });
      } catch {
        return false;
      }
      return /35 110\r\n$/.test(s.output.slice(0, after));
    }, 20_000, 200);
    s.type('exit 4\r');
    assert.equal(await s.exited(), 4, s.output);
    // The container goes on.
    assert.equal(await state('ex-tty'), 'CONTAINER_STATE_RUNNING');
  });

  it('refuses exec with a clear error when the container is not running or unknown, and bad flags before calling', async () => {
    const run = await cli(['run', '--name', 'ex-done', image, 'true']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('ex-done to exit', async () => (await state('ex-done')) === 'CONTAINER_STATE_EXITED', 30_000, 250);
    const stopped = await cli(['exec', 'ex-done', 'echo', 'hi']);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /^error: failed to exec in container "ex-done": it is exited; expected a running container\n$/);

    const unknown = await cli(['exec', 'no-such-box', 'echo', 'hi']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no-such-box/);
    assert.match(unknown.stderr, /not found/);

    const badEnv = await cli(['exec', '-e', '1BAD=x', 'ex-done', 'true']);
    assert.equal(badEnv.code, 2);
    assert.match(badEnv.stderr, /-e, --env: expected KEY=VALUE/);
    const badDir = await cli(['exec', '-w', 'relative', 'ex-done', 'true']);
    assert.equal(badDir.code, 2);
    assert.match(badDir.stderr, /-w, --workdir: expected an absolute path/);
    const noCmd = await cli(['exec', 'ex-done']);
    assert.equal(noCmd.code, 2);
  });

  it('attaches to a running terminal container, detaches with Ctrl-P Ctrl-Q, and ends with its exit code', async () => {
    const run = await cli(['run', '-d', '-it', '--name', 'att-box', image, 'sh']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('att-box to run', async () => (await state('att-box')) === 'CONTAINER_STATE_RUNNING', 30_000, 250);

    const a = pty(['attach', 'att-box']);
    // The shell's prompt was printed before the attach: ask for a new one.
    a.type('echo attached-$((1+2))\r');
    await a.expect(/attached-3\r\n/);
    a.type('\x10\x11');
    assert.equal(await a.exited(), 0, a.output);
    assert.match(a.output, /detached/);
    assert.equal(await state('att-box'), 'CONTAINER_STATE_RUNNING');

    const b = pty(['attach', 'att-box']);
    b.type('hostname\r');
    await b.expect(/att-box\r\n/);
    b.type('exit 7\r');
    assert.equal(await b.exited(), 7, b.output);
    await waitFor('att-box to show as exited', async () => (await state('att-box')) === 'CONTAINER_STATE_EXITED', 20_000, 250);

    const again = await cli(['attach', 'att-box']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /failed to attach to container "att-box": it is exited; expected a running container/);
  });

  it('feeds run -i input to a container without a terminal, closing it at the end, with every line of output and the exit code', async () => {
    const r = await cli(['run', '-i', '--rm', image, 'sh', '-c', 'echo started; tr a-z A-Z; echo err >&2; exit 4'], 'hello\nworld\n');
    assert.equal(r.code, 4, r.stderr);
    assert.equal(r.stdout, 'started\nHELLO\nWORLD\n');
    assert.equal(r.stderr, 'err\n');
  });

  it('removes an attached run --rm container within the attach call: gone from ps -a and inspect once the CLI exits, with its output and exit code', async () => {
    for (const tty of [false, true]) {
      const name = tty ? 'rm-in-attach-t' : 'rm-in-attach';
      const r = await cli(['run', '--rm', ...(tty ? ['-t'] : []), '--name', name, image, 'sh', '-c', 'echo bye; exit 5']);
      assert.equal(r.code, 5, r.stderr);
      assert.equal(r.stdout.replace(/\r\n/g, '\n'), 'bye\n');
      assert.equal((await ps()).some((c) => c.name === name), false, `${name} is not listed after --rm`);
      const inspect = await cli(['inspect', name]);
      assert.equal(inspect.code, 1, inspect.stdout);
      // The controller deleted its record when the agent's exit said it was removed (no second call).
      const log = readFileSync(cluster?.controller?.logFile ?? '', 'utf8');
      assert.ok(log.split('\n').some((l) => l.includes('container removed after its attached run') && l.includes(`"${name}"`)), `controller log names ${name}`);
    }
  });

  it('relays every line of a quick container\'s large output, in order and once, when it exits before the output is read', async () => {
    const r = await cli(['run', '--rm', image, 'sh', '-c', 'seq 1 30000; echo err-end >&2; echo tail']);
    assert.equal(r.code, 0, r.stderr);
    const want = `${Array.from({ length: 30000 }, (_, i) => String(i + 1)).join('\n')}\ntail\n`;
    assert.equal(r.stdout.length, want.length, 'stdout length');
    assert.equal(r.stdout, want);
    assert.equal(r.stderr, 'err-end\n');
  });

  it('refuses an attach with remove to a workload\'s replica (one-off containers only), which keeps running', async () => {
    if (!cluster) throw new Error('no cluster');
    const manifest = ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: keep', 'spec:', '  replicas: 1', `  image: ${image}`, '  command: ["sleep", "600"]', ''].join('\n');
    const applied = await cluster.cli(['apply', '-f', '-'], { stdin: manifest });
    assert.equal(applied.code, 0, applied.stderr);
    const client = new StreamServiceClient(cluster.address, credentials.createInsecure());
    try {
      await waitFor('a keep replica to run', async () => (await ps()).some((c) => c.name.startsWith('keep-') && c.status?.state === 'CONTAINER_STATE_RUNNING'), 60_000, 500);
      const replica = (await ps()).find((c) => c.name.startsWith('keep-'));
      assert.ok(replica);
      const call = client.attach();
      const ended = new Promise<{ code?: number; details?: string }>((resolve) => {
        call.on('data', () => undefined);
        call.on('error', (err: { code?: number; details?: string }) => resolve(err));
        call.on('end', () => resolve({ code: 0 }));
      });
      call.write({ input: { $case: 'attach', value: { container: replica.id, stdin: false, start: false, remove: true } } });
      const status = await ended;
      assert.equal(status.code, 9, 'FAILED_PRECONDITION');
      assert.match(status.details ?? '', /with remove: it is a replica of workload "keep"; expected a one-off container/);
      assert.equal((await ps()).find((c) => c.id === replica.id)?.status?.state, 'CONTAINER_STATE_RUNNING');
    } finally {
      client.close();
      assert.equal((await cluster.cli(['delete', 'workload', 'keep'])).code, 0);
    }
  });

  it('gives a detached -i container\'s input to one berth attach, whose end closes it', async () => {
    const run = await cli(['run', '-d', '-i', '--name', 'in-box', image, 'sh', '-c', 'while read x; do echo "got $x"; done; echo eof; exit 2']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('in-box to run', async () => (await state('in-box')) === 'CONTAINER_STATE_RUNNING', 30_000, 250);
    const r = await cli(['attach', 'in-box'], 'one\ntwo\n');
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, 'got one\ngot two\neof\n');
  });

  it('attaches to a container without a terminal and shows its output from now until it exits', async () => {
    const run = await cli(['run', '-d', '--name', 'att-plain', image, 'sh', '-c', 'echo before; until [ -e /tmp/go ]; do echo tick; sleep 0.2; done; echo later-out; echo later-err >&2; exit 9']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('att-plain to run', async () => (await state('att-plain')) === 'CONTAINER_STATE_RUNNING', 30_000, 250);
    if (!cluster) throw new Error('no cluster');
    const child = spawn(process.execPath, [BERTH_JS, 'attach', '--no-stdin', 'att-plain'], { env: cleanEnv({ BERTH_CONTROLLER: cluster.address }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      // Attached once its output arrives; then let the container go on.
      await waitFor('the attach to show output', () => stdout.includes('tick\n'), 30_000, 50);
      const go = await cli(['exec', 'att-plain', 'touch', '/tmp/go']);
      assert.equal(go.code, 0, go.stderr);
      assert.equal(await exited, 9, stderr);
    } finally {
      child.kill('SIGKILL');
    }
    assert.match(stdout, /^(tick\n)+later-out\n$/, 'from now on: not "before"');
    assert.equal(stderr, 'later-err\n');
  });
});
