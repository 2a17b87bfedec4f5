/**
 * Supervision that survives the agent: a container created by one process
 * (killed with SIGKILL afterwards) is found, controlled and its exit learned
 * by a new Runtime over the same root.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { RuntimeFixture } from './busybox.js';

const AGENT_LIKE = fileURLToPath(new URL('./fixtures/agent-like.js', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs the fixture until it created the container, then kills it with SIGKILL. */
async function createFromAnotherProcessAndKillIt(f: RuntimeFixture, bundle: string, id: string): Promise<number> {
  const child = spawn(process.execPath, [AGENT_LIKE, f.root, bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  try {
    const deadline = Date.now() + 20_000;
    while (!/created (\d+)/.test(out)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`agent-like failed: ${err || out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));
  }
  return Number(/created (\d+)/.exec(out)?.[1]);
}

describe('Runtime re-adoption', function () {
  this.timeout(60_000);
  let f: RuntimeFixture;

  beforeEach(async () => {
    f = await new RuntimeFixture().setup();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it('keeps the container running and lets a new runtime control it after the creating process is killed', async () => {
    const bundle = await f.bundle(['sh', '-c', 'echo hello; trap "echo bye; exit 3" TERM; while true; do sleep 0.1; done']);
    const pid = await createFromAnotherProcessAndKillIt(f, bundle, 'c1');
    const state = { shimPid: Number(await readFile(`${f.root}/c1/shim.pid`, 'utf8')) };
    assert.ok(alive(pid), 'the container died with its creator');
    assert.ok(alive(state.shimPid), 'the shim died with the creator');

    const fresh = await f.newRuntime();
    const list = await fresh.list();
    assert.deepEqual(list.map((c) => [c.id, c.status, c.pid]), [['c1', 'running', pid]]);
    const exit = await fresh.stop('c1', { timeoutMs: 20_000 });
    assert.deepEqual([exit.exitCode, exit.reason], [3, 'Error']);
    const lines = [];
    for await (const e of fresh.logs('c1')) lines.push(e.text);
    assert.deepEqual(lines, ['hello', 'bye']);
    await fresh.delete('c1');
    const deadline = Date.now() + 10_000;
    while (alive(state.shimPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!alive(state.shimPid), 'the shim outlived its container');
  });

  it('learns an exit that happened while no runtime was running', async () => {
    const bundle = await f.bundle(['sh', '-c', 'sleep 0.3; echo done; exit 7']);
    await createFromAnotherProcessAndKillIt(f, bundle, 'c1');
    const state = { shimPid: Number(await readFile(`${f.root}/c1/shim.pid`, 'utf8')) };
    const deadline = Date.now() + 20_000;
    while (alive(state.shimPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!alive(state.shimPid), 'the shim did not exit after its container');

    const fresh = await f.newRuntime();
    const info = await fresh.state('c1');
    assert.equal(info.status, 'stopped');
    assert.deepEqual([info.exit?.exitCode, info.exit?.reason], [7, 'Error']);
    const lines = [];
    for await (const e of fresh.logs('c1')) lines.push(e.text);
    assert.deepEqual(lines, ['done']);
  });
});
