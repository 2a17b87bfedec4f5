/**
 * Terminals: a container with process.terminal gets a pty from its own
 * devpts; clients attach through the shim's socket, the window size follows
 * resize, and `berth-runtime run` drives a pty end to end (under `script`).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RuntimeFixture } from './busybox.js';

const CLI = fileURLToPath(new URL('../../../agent/runtime-cli/main.js', import.meta.url));

describe('Runtime terminals', function () {
  this.timeout(60_000);
  let f: RuntimeFixture;

  beforeEach(async () => {
    f = await new RuntimeFixture().setup();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it('gives an attached client an interactive shell whose window size follows resize', async () => {
    const bundle = await f.bundle(['sh'], { tty: true, consoleSize: { rows: 24, cols: 80 } });
    await f.runtime.create('c1', bundle, { start: true });
    const sock = await f.runtime.attach('c1');
    let out = '';
    const ended = new Promise<void>((resolve) => {
      sock.on('data', (d: Buffer) => { out += d.toString(); });
      sock.on('close', () => resolve());
    });
    await f.runtime.resize('c1', 30, 100);
    sock.write('stty size; tty; echo $((6*7)); exit 3\n');
    await ended;
    assert.match(out, /\r\n30 100\r\n/);
    assert.match(out, /\r\n\/dev\/pts\/0\r\n/);
    assert.match(out, /\r\n42\r\n/);
    const exit = await f.runtime.wait('c1', { timeoutMs: 10_000 });
    assert.equal(exit.exitCode, 3);
    const logged = await f.output('c1');
    assert.ok(logged.includes('42'), `log: ${JSON.stringify(logged)}`);
  });

  it('starts with the requested console size and refuses attach to a container without a terminal', async () => {
    await f.runtime.create('t', await f.bundle(['sh', '-c', 'stty size'], { tty: true, consoleSize: { rows: 40, cols: 120 } }), { start: true });
    await f.runtime.wait('t', { timeoutMs: 10_000 });
    assert.deepEqual(await f.output('t'), ['40 120']);
    await f.runtime.create('plain', await f.bundle(['sleep', '60']), { start: true });
    await assert.rejects(f.runtime.attach('plain'), /it has no terminal/);
    await assert.rejects(f.runtime.resize('plain', 0, 10), /rows: expected 1..65535, got 0/);
  });

  it('runs an interactive shell through a real pty with berth-runtime run and returns its exit code', async () => {
    const bundle = await f.bundle(['sh'], { tty: true });
    const cmd = `${process.execPath} ${CLI} --root ${f.root} run --bundle ${bundle} c1`;
    const child = spawn('script', ['-qec', `stty rows 33 cols 101; ${cmd}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.stdin.write('stty size; tty; exit 4\n');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 4, out);
    assert.match(out, /33 101/);
    assert.match(out, /\/dev\/pts\/0/);
    assert.deepEqual(await f.runtime.list(), [], 'run leaves no container behind');
  });
});
