/** exec: a process joins a running container's namespaces and cgroups. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { RuntimeFixture } from './busybox.js';

const CLI = fileURLToPath(new URL('../../../agent/runtime-cli/main.js', import.meta.url));

describe('Runtime exec', function () {
  this.timeout(60_000);
  let f: RuntimeFixture;

  beforeEach(async () => {
    f = await new RuntimeFixture().setup();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it('runs a process in the container namespaces with its env, hostname and capabilities', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60'], { hostname: 'box-two', env: ['GREETING=hi'] }), { start: true });
    const r = await f.runtime.exec('c1', {
      args: ['sh', '-c', 'echo $$ $GREETING $EXTRA; hostname; ps -o pid,comm | grep -c sleep; grep CapEff /proc/self/status; pwd; exit 6'],
      env: ['EXTRA=x'], cwd: '/tmp',
    });
    assert.equal(r.exitCode, 6, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.notEqual(lines[0]?.split(' ')[0], '1');
    assert.deepEqual(lines.slice(0, 5).map((l, i) => (i === 0 ? l.split(' ').slice(1).join(' ') : l)), ['hi x', 'box-two', '1', 'CapEff:\t00000000a80425fb', '/tmp']);
  });

  it('joins the container cgroups so its processes count against the limits', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60'], { resources: { pidsLimit: 5 } }), { start: true });
    const r = await f.runtime.exec('c1', { args: ['sh', '-c', 'for i in 1 2 3 4 5 6; do sleep 1 & done; wait; echo end'] });
    assert.match(r.stderr + r.stdout, /can't fork/);
    const stats = await f.runtime.stats('c1');
    assert.ok(stats.pidsCurrent <= 5, `pids.current ${stats.pidsCurrent}`);
  });

  it('runs as another user and reports a missing program clearly', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60']), { start: true });
    const asNobody = await f.runtime.exec('c1', { args: ['id', '-u'], user: 'nobody' });
    assert.equal(asNobody.stdout.trim(), '65534');
    const missing = await f.runtime.exec('c1', { args: ['no-such-tool'] });
    assert.equal(missing.exitCode, 127);
    assert.match(missing.stderr, /executable "no-such-tool" not found in \$PATH/);
  });

  it('refuses to exec into a container that is not running', async () => {
    await f.runtime.create('c1', await f.bundle(['true']), { start: true });
    await f.runtime.wait('c1', { timeoutMs: 10_000 });
    await assert.rejects(f.runtime.exec('c1', { args: ['true'] }), /failed to exec in container "c1": it is stopped, expected running/);
  });

  it('gives exec -t a pty through berth-runtime and returns the exit code', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60']), { start: true });
    const cmd = `${process.execPath} ${CLI} --root ${f.root} exec -t c1 sh`;
    const child = spawn('script', ['-qec', `stty rows 21 cols 77; ${cmd}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.stdin.write('tty; stty size; exit 5\n');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 5, out);
    assert.match(out, /\/dev\/pts\/\d+/);
    assert.match(out, /21 77/);
  });
});
