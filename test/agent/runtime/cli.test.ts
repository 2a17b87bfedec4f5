/** berth-runtime: the OCI runtime command-line verbs against real containers. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RuntimeFixture } from './busybox.js';

const CLI = fileURLToPath(new URL('../../../agent/runtime-cli/main.js', import.meta.url));

function cli(root: string, args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.stdin.end(input);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('berth-runtime', function () {
  this.timeout(60_000);
  let f: RuntimeFixture;

  beforeEach(async () => {
    f = await new RuntimeFixture().setup();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it('goes through create, start, state, kill and delete with runtime-spec state JSON', async () => {
    const bundle = await f.bundle(['sh', '-c', 'trap "exit 9" TERM; echo up; while true; do sleep 0.1; done']);
    const pidFile = join(f.dir, 'pid');
    assert.equal((await cli(f.root, ['create', '--bundle', bundle, '--pid-file', pidFile, 'c1'])).code, 0);
    const created = JSON.parse((await cli(f.root, ['state', 'c1'])).stdout) as Record<string, unknown>;
    assert.deepEqual(
      { ...created, pid: undefined },
      { ociVersion: '1.0.2', id: 'c1', status: 'created', pid: undefined, bundle, annotations: { 'io.berth.seccomp': 'default' } },
    );
    assert.equal(created['pid'], Number(await readFile(pidFile, 'utf8')));

    assert.equal((await cli(f.root, ['start', 'c1'])).code, 0);
    assert.equal((JSON.parse((await cli(f.root, ['state', 'c1'])).stdout) as { status: string }).status, 'running');
    const again = await cli(f.root, ['start', 'c1']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /failed to start container "c1": it is running, expected created/);

    const notYet = await cli(f.root, ['delete', 'c1']);
    assert.equal(notYet.code, 1);
    assert.match(notYet.stderr, /it is running; stop it first or use force/);

    assert.equal((await cli(f.root, ['kill', 'c1', 'TERM'])).code, 0);
    await f.runtime.wait('c1', { timeoutMs: 10_000 });
    const stopped = JSON.parse((await cli(f.root, ['state', 'c1'])).stdout) as { status: string; exitCode: number; pid?: number };
    assert.deepEqual([stopped.status, stopped.exitCode, stopped.pid], ['stopped', 9, undefined]);
    assert.equal((await cli(f.root, ['delete', 'c1'])).code, 0);
    const gone = await cli(f.root, ['state', 'c1']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /container "c1" not found/);
  });

  it('runs attached, passing output and the exit code through', async () => {
    const bundle = await f.bundle(['sh', '-c', 'echo out; echo err >&2; exit 42']);
    const r = await cli(f.root, ['run', '--bundle', bundle, 'c1']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [42, 'out\n', 'err\n']);
    assert.deepEqual(await f.runtime.list(), []);
  });

  it('passes SIGTERM to an attached run and still cleans up after it', async () => {
    const bundle = await f.bundle(['sh', '-c', 'trap "echo bye; exit 7" TERM; echo up; while true; do sleep 0.1; done']);
    const child = spawn(process.execPath, [CLI, '--root', f.root, 'run', '--bundle', bundle, 'c1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    for (let i = 0; i < 200 && !out.includes('up'); i++) await new Promise((r) => setTimeout(r, 25));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 7);
    assert.equal(out, 'up\nbye\n');
    assert.deepEqual(await f.runtime.list(), [], 'the state dir is gone');
  });

  it('shows logs, updates limits and reports stats of a detached container', async () => {
    const bundle = await f.bundle(['sh', '-c', 'echo one; echo two; exec sleep 60'], { resources: { memoryBytes: 64 << 20 } });
    assert.equal((await cli(f.root, ['run', '--detach', '--bundle', bundle, 'c1'])).code, 0);
    for (let i = 0; i < 100 && (await f.output('c1')).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await cli(f.root, ['logs', '--tail', '1', 'c1'])).stdout, 'two\n');
    assert.match((await cli(f.root, ['logs', '-t', 'c1'])).stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z one\n/);
    assert.equal((await cli(f.root, ['update', '--memory', String(96 << 20), '--pids', '30', '--cpus', '0.5', 'c1'])).code, 0);
    const stats = JSON.parse((await cli(f.root, ['stats', 'c1'])).stdout) as { memoryLimitBytes: number; pidsMax: number; cpuPercent: number };
    assert.deepEqual([stats.memoryLimitBytes, stats.pidsMax], [96 << 20, 30]);
    assert.ok(stats.cpuPercent >= 0 && stats.cpuPercent <= 100, `cpuPercent ${stats.cpuPercent}`);
    assert.match((await cli(f.root, ['list'])).stdout, /^ID\tPID\tSTATUS\tBUNDLE\tCREATED\nc1\t\d+\trunning\t/);
  });

  it('explains bad usage and bad bundles', async () => {
    const usage = await cli(f.root, ['frob']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /unknown command "frob"/);
    const noId = await cli(f.root, ['start']);
    assert.match(noId.stderr, /expected exactly one container id, got 0/);
    const bad = await cli(f.root, ['create', '--bundle', f.dir, 'c1']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /failed to read bundle config ".*config\.json"/);
    const signal = await cli(f.root, ['kill', 'c1', 'NOPE']);
    assert.match(signal.stderr, /unknown signal "NOPE"/);
  });
});
