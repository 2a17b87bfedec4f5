/**
 * berth-helper's stages, driven directly: spec parsing, role dispatch, setup
 * errors reported with their stage, the foreground "run" role's exit status.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultHelperPath } from '../../../agent/sys/linux.js';
import { encodeInitSpec, type InitSpec } from '../../../agent/sys/index.js';
import { makeBusyboxRootfs } from '../runtime/busybox.js';

const HELPER = defaultHelperPath();

function runHelper(args: string[], spec?: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(HELPER, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    const fd3 = child.stdio[3] as NodeJS.WritableStream;
    fd3.on('error', () => undefined);
    fd3.end(spec ?? Buffer.alloc(0));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('berth-helper', function () {
  this.timeout(30_000);
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-helper-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const spec = (over: Partial<InitSpec> = {}): InitSpec => ({
    stateDir: dir, rootfs: join(dir, 'rootfs'), rootfsReadonly: false, cwd: '/', uid: 0, gid: 0, additionalGids: [],
    args: ['sh', '-c', 'echo hi; exit 5'], env: ['PATH=/bin'], noNewPrivileges: true, terminal: false, autostart: false,
    rlimits: [], mounts: [{ destination: '/proc', type: 'proc', source: 'proc', flags: 14, data: '' }],
    maskedPaths: [], readonlyPaths: [], cgroupProcs: [], joinNamespaces: [], ...over,
  });

  it('prints its protocol version', async () => {
    const r = await runHelper(['version']);
    assert.deepEqual([r.code, r.stdout], [0, 'berth-spec-1\n']);
  });

  it('names the roles when the role is unknown', async () => {
    const r = await runHelper(['frobnicate']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown role "frobnicate" \(expected shim, run, exec, spawner, fsops or version\)/);
  });

  it('rejects a spec without the magic first string', async () => {
    const r = await runHelper(['shim'], Buffer.from('hello\0end\0'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /spec: expected "berth-spec-1" first/);
  });

  it('rejects a spec with an unknown keyword or a missing end', async () => {
    const unknown = await runHelper(['shim'], Buffer.from('berth-spec-1\0bogus\0end\0'));
    assert.match(unknown.stderr, /spec: unknown keyword "bogus"/);
    const noEnd = await runHelper(['shim'], Buffer.from('berth-spec-1\0state\0/x\0'));
    assert.match(noEnd.stderr, /spec: missing "end"/);
    const notNul = await runHelper(['shim'], Buffer.from('berth-spec-1'));
    assert.match(notNul.stderr, /spec: empty or not NUL-terminated/);
  });

  it('serves shim requests one after another as a spawner, surviving a bad one', async () => {
    const good = encodeInitSpec(spec({ args: ['true'] }));
    const child = spawn(HELPER, ['spawner'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stdin.write(`5\nhello${good.length}\n`);
    child.stdin.end(good);
    await new Promise((r) => child.on('close', r));
    const lines = out.trim().split('\n');
    assert.deepEqual(lines[0], 'berth-helper: spec: empty or not NUL-terminated (is fd 3 the spec?)');
    assert.equal(lines[1], 'done 1');
    assert.match(lines[2] ?? '', /^error bind rootfs ".*\/rootfs" onto itself: No such file or directory$/);
    assert.equal(lines[3], 'done 1');
  });

  it('reports the failing setup stage on stdout and records it in exit.json', async () => {
    const r = await runHelper(['shim'], encodeInitSpec(spec()));
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^error bind rootfs ".*\/rootfs" onto itself: No such file or directory\n$/);
    const exit = JSON.parse(await readFile(join(dir, 'exit.json'), 'utf8')) as { error: string; exitCode: number };
    assert.match(exit.error, /bind rootfs/);
    assert.ok(!existsSync(join(dir, 'control')), 'the control FIFO is removed');
  });

  it('runs in the foreground with the caller stdio and exits with the container status', async () => {
    await makeBusyboxRootfs(join(dir, 'rootfs'));
    const r = await runHelper(['run'], encodeInitSpec(spec({ autostart: true })));
    assert.deepEqual([r.code, r.stdout], [5, 'hi\n']);
    const exit = JSON.parse(await readFile(join(dir, 'exit.json'), 'utf8')) as { exitCode: number; signal: number };
    assert.deepEqual([exit.exitCode, exit.signal], [5, 0]);
    assert.ok(existsSync(join(dir, 'started')));
  });

  it('fails the process setup with a clear message when an rlimit cannot be set', async () => {
    await makeBusyboxRootfs(join(dir, 'rootfs'));
    const r = await runHelper(['run'], encodeInitSpec(spec({ autostart: true, rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 99999999 }] })));
    assert.equal(r.code, 127);
    assert.match(r.stderr, /setrlimit RLIMIT_NOFILE to 10:99999999: Operation not permitted/);
  });
});
