import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, tryRun } from './exec.js';
import { LeakTracker, makeHosts, makeTempDir, newSince, takeLeakSnapshot, type LeakItem, type TestHosts } from './index.js';

describe('test harness leak checks', function () {
  this.timeout(60_000);
  const undo: (() => Promise<unknown> | unknown)[] = [];

  afterEach(async () => {
    for (const u of undo.splice(0).reverse()) await u();
  });

  function find(items: LeakItem[], kind: LeakItem['kind'], text: string): LeakItem | undefined {
    return items.find((i) => i.kind === kind && (i.id.includes(text) || i.detail.includes(text)));
  }

  it('reports a new temp dir, mount, cgroup, process and host set when they appear, and nothing once removed', async () => {
    const before = await takeLeakSnapshot();

    const dir = makeTempDir('leakcheck');
    undo.push(() => rmSync(dir, { recursive: true, force: true }));
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    undo.push(() => tryRun('umount', [mnt]));
    const cgroup = `/sys/fs/cgroup/pids/berth-leakcheck-${process.pid}`;
    mkdirSync(cgroup);
    undo.push(() => existsSync(cgroup) && rmdirSync(cgroup));
    // `; :` keeps sh from exec'ing sleep, so the command line keeps the temp dir.
    const child: ChildProcess = spawn('sh', ['-c', 'sleep 30; :', dir], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    undo.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    const hosts: TestHosts = await makeHosts(1);
    undo.push(() => hosts.cleanup());

    const fresh = newSince(before, await takeLeakSnapshot());
    assert.ok(find(fresh, 'tempdir', dir), 'temp dir');
    assert.ok(find(fresh, 'mount', mnt), 'mount');
    assert.ok(find(fresh, 'cgroup', cgroup), 'cgroup');
    const proc = find(fresh, 'process', `pid ${child.pid}:`);
    assert.ok(proc, 'process');
    assert.equal(proc.attributed, true);
    const ns = find(fresh, 'netns', hosts.runId);
    assert.equal(ns?.attributed, true);
    assert.equal(find(fresh, 'link', hosts.bridge)?.attributed, true);
    assert.ok(find(fresh, 'nft', 'berth_test_guard') ?? find([...before.values()], 'nft', 'berth_test_guard'), 'guard table');

    for (const u of undo.splice(0).reverse()) await u();
    const after = newSince(before, await takeLeakSnapshot());
    for (const text of [dir, cgroup, hosts.runId]) {
      assert.equal(after.find((i) => i.id.includes(text) || i.detail.includes(text)), undefined, `${text} still reported`);
    }
  });

  it('fails a run whose own host set is left behind, and passes once it is cleaned up', async () => {
    const tracker = new LeakTracker();
    await tracker.start();
    const hosts = await makeHosts(1);
    undo.push(() => hosts.cleanup());
    const report = await tracker.finish(0);
    // Attributed to this process by its run id: a leak even when other runs are active.
    assert.ok(report.leaked.some((i) => i.kind === 'netns' && i.id === hosts.hosts[0]?.netns));
    assert.ok(report.leaked.some((i) => i.kind === 'link' && i.id === hosts.bridge));

    const second = new LeakTracker();
    await second.start();
    await hosts.cleanup();
    const clean = await second.finish(0);
    assert.deepEqual(clean.leaked.filter((i) => i.id.includes(hosts.runId)), []);
  });
});
