/**
 * Real containers from a busybox bundle: isolation, limits, lifecycle, logs.
 * Runs as root on a machine with cgroup v1 (see MACHINE-NOTES.md).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parseSince, type LogEntry } from '../../../agent/runtime/index.js';
import { RuntimeFixture } from './busybox.js';

describe('Runtime (real containers)', function () {
  this.timeout(60_000);
  let f: RuntimeFixture;

  beforeEach(async () => {
    f = await new RuntimeFixture().setup();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it('runs the process as pid 1 with its own hostname when created and started', async () => {
    const bundle = await f.bundle(['sh', '-c', 'echo pid=$$; hostname; cat /etc/hostname'], { hostname: 'box-one' });
    const created = await f.runtime.create('c1', bundle);
    assert.equal(created.status, 'created');
    assert.ok(created.pid && created.pid > 1);
    await f.runtime.start('c1');
    const exit = await f.runtime.wait('c1', { timeoutMs: 10_000 });
    assert.equal(exit.exitCode, 0);
    assert.equal(exit.reason, 'Completed');
    assert.deepEqual(await f.output('c1'), ['pid=1', 'box-one', 'box-one']);
  });

  it('joins a given network namespace and lists extra hosts', async () => {
    const netns = `berth-test-${process.pid}`;
    execFileSync('ip', ['netns', 'add', netns]);
    try {
      execFileSync('ip', ['-n', netns, 'link', 'add', 'berthv0', 'type', 'veth', 'peer', 'name', 'berthv1']);
      const { exit, output } = await f.runToExit('c1', ['sh', '-c', 'ls /sys/class/net | tr "\\n" " "; echo; grep db.internal /etc/hosts'],
        { netnsPath: `/run/netns/${netns}`, extraHosts: [['db.internal', '10.1.2.3']] });
      assert.equal(exit.exitCode, 0);
      assert.deepEqual(output[0]?.trim().split(' ').sort(), ['berthv0', 'berthv1', 'lo']);
      assert.equal(output[1], '10.1.2.3\tdb.internal');
    } finally {
      execFileSync('ip', ['netns', 'delete', netns]);
    }
  });

  it('brings lo up in a new network namespace, so 127.0.0.1 answers inside', async () => {
    const { exit, output } = await f.runToExit('c1', ['sh', '-c', 'ls /sys/class/net | tr "\\n" " "; echo; cat /sys/class/net/lo/flags; nc -l -p 7777 -e true & sleep 0.2; echo ping | nc 127.0.0.1 7777 && echo reached']);
    assert.equal(exit.exitCode, 0, output.join('\n'));
    assert.deepEqual(output[0]?.trim().split(' '), ['lo']);
    // IFF_UP (0x1) is set on lo.
    assert.equal(Number.parseInt(output[1] ?? '0', 16) & 1, 1, output.join('\n'));
    assert.ok(output.includes('reached'), output.join('\n'));
  });

  it('hides host processes and mounts when the container lists them', async () => {
    const { exit, output } = await f.runToExit('c1', ['sh', '-c', 'ps -o pid,comm; echo ---; cat /proc/mounts']);
    assert.equal(exit.exitCode, 0);
    const sep = output.indexOf('---');
    const ps = output.slice(1, sep);
    assert.deepEqual(ps.map((l) => l.trim().split(/\s+/)[0]).sort(), ['1', '2'], `processes: ${ps.join(' | ')}`);
    const mounts = output.slice(sep + 1).map((l) => l.split(' ')[1]);
    const hostOnly = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1])
      .filter((m): m is string => !!m && m !== '/' && !['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys'].includes(m));
    for (const m of hostOnly) assert.ok(!mounts.includes(m), `host mount ${m} visible in the container`);
    for (const m of ['/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/etc/hosts', '/etc/resolv.conf']) {
      assert.ok(mounts.includes(m), `missing mount ${m}: ${mounts.join(' ')}`);
    }
  });

  it('cuts capabilities to the default set and sets no_new_privs when it runs as root', async () => {
    const { output } = await f.runToExit('c1', ['sh', '-c', 'grep -E "^(Cap|NoNewPrivs)" /proc/self/status']);
    const status = Object.fromEntries(output.map((l) => l.split(/:\s+/)));
    assert.equal(status['CapEff'], '00000000a80425fb');
    assert.equal(status['CapPrm'], '00000000a80425fb');
    assert.equal(status['CapBnd'], '00000000a80425fb');
    assert.equal(status['CapInh'], '00000000a80425fb');
    assert.equal(status['CapAmb'], '0000000000000000');
    assert.equal(status['NoNewPrivs'], '1');
  });

  it('drops all effective capabilities when it runs as a non-root user', async () => {
    const { output } = await f.runToExit('c1', ['sh', '-c', 'id -u; id -g; grep CapEff /proc/self/status; echo $HOME'], { user: 'nobody' });
    assert.deepEqual(output, ['65534', '65534', 'CapEff:\t0000000000000000', '/nonexistent']);
  });

  it('filters syscalls with the default seccomp profile: no namespaces or keyrings from inside', async () => {
    const { output } = await f.runToExit('c1', ['sh', '-c', 'grep Seccomp: /proc/self/status; unshare -U true 2>&1; echo u=$?; unshare -n true 2>/dev/null; echo n=$?; (true &); echo fork=$?']);
    assert.equal(output[0], 'Seccomp:\t2');
    assert.match(output[1] ?? '', /Operation not permitted/);
    assert.deepEqual(output.slice(2), ['u=1', 'n=1', 'fork=0']);
    const exec = await (async () => {
      await f.runtime.create('c2', await f.bundle(['sleep', '60']), { start: true });
      return f.runtime.exec('c2', { args: ['sh', '-c', 'grep Seccomp: /proc/self/status'] });
    })();
    assert.equal(exec.stdout.trim(), 'Seccomp:\t2');
    const { output: unconfined } = await f.runToExit('c3', ['grep', 'Seccomp:', '/proc/self/status'], { seccomp: 'unconfined' });
    assert.deepEqual(unconfined, ['Seccomp:\t0']);
  });

  it('masks and write-protects kernel paths when the container reads them', async () => {
    const checks = [
      'cat /proc/keys 2>/dev/null | wc -c',
      'cat /proc/timer_list 2>/dev/null | wc -c',
      'ls /sys/firmware | wc -l',
      '(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo writable || echo readonly',
      '(echo x > /proc/sysrq-trigger) 2>/dev/null && echo writable || echo readonly',
      'touch /sys/x 2>/dev/null && echo writable || echo readonly',
    ];
    const { exit, output } = await f.runToExit('c1', ['sh', '-c', checks.join('; ')]);
    assert.equal(exit.exitCode, 0);
    assert.deepEqual(output.map((l) => l.trim()), ['0', '0', '0', 'readonly', 'readonly', 'readonly']);
    // The host has these, so the zeros above come from masking.
    if (existsSync('/proc/timer_list')) assert.ok((await readFile('/proc/timer_list', 'utf8')).length > 0);
  });

  it('applies the NOFILE rlimit and provides /dev when the process starts', async () => {
    const { output } = await f.runToExit('c1', ['sh', '-c', 'ulimit -n; ulimit -Hn; ls /dev | tr "\\n" " "; echo; head -c 4 /dev/urandom | wc -c'],
      { nofile: { soft: 512, hard: 4096 } });
    assert.equal(output[0], '512');
    assert.equal(output[1], '4096');
    for (const d of ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'ptmx', 'pts', 'shm', 'mqueue']) {
      assert.ok(output[2]?.split(' ').includes(d), `/dev lacks ${d}: ${output[2]}`);
    }
    assert.equal(output[3]?.trim(), '4');
  });

  it('keeps the root filesystem read-only when the bundle asks for it', async () => {
    const { exit, output } = await f.runToExit('c1', ['sh', '-c', 'touch /x 2>/dev/null && echo writable || echo readonly; echo ok > /dev/shm/y && cat /dev/shm/y'],
      { readonlyRootfs: true });
    assert.equal(exit.exitCode, 0);
    assert.deepEqual(output, ['readonly', 'ok']);
  });

  it('reports exit codes 0, 1, 137 and 143 with their reasons', async () => {
    const ok = await f.runToExit('e0', ['true']);
    assert.deepEqual([ok.exit.exitCode, ok.exit.reason], [0, 'Completed']);
    const fail = await f.runToExit('e1', ['false']);
    assert.deepEqual([fail.exit.exitCode, fail.exit.reason], [1, 'Error']);

    await f.runtime.create('e137', await f.bundle(['sleep', '60']), { start: true });
    await f.runtime.kill('e137', 'KILL');
    const killed = await f.runtime.wait('e137', { timeoutMs: 10_000 });
    assert.deepEqual([killed.exitCode, killed.signal, killed.reason], [137, 9, 'Signaled']);

    // pid 1 ignores signals it has no handler for; this shell forwards TERM to its child.
    const script = 'trap \'kill -TERM $child; wait $child; exit $?\' TERM; sleep 60 & child=$!; echo ready; wait $child';
    await f.runtime.create('e143', await f.bundle(['sh', '-c', script]), { start: true });
    await waitForOutput(f, 'e143', 'ready');
    // busybox ash can miss a trapped signal that lands while it sets up `wait`; repeat it.
    let termed;
    for (let i = 0; i < 10 && !termed; i++) {
      await f.runtime.kill('e143', 'TERM').catch(() => undefined);
      termed = await f.runtime.wait('e143', { timeoutMs: 1000 }).catch(() => undefined);
    }
    assert.ok(termed, 'the container did not stop after SIGTERM');
    assert.deepEqual([termed.exitCode, termed.reason], [143, 'Error']);
  });

  it('sends SIGTERM, then SIGKILL after the grace period when a process ignores TERM', async () => {
    const bundle = await f.bundle(['sh', '-c', 'trap "echo got TERM" TERM; echo ready; while true; do sleep 0.1; done']);
    await f.runtime.create('c1', bundle, { start: true });
    await waitForOutput(f, 'c1', 'ready');
    const t0 = Date.now();
    const exit = await f.runtime.stop('c1', { timeoutMs: 1500 });
    const elapsed = Date.now() - t0;
    assert.deepEqual([exit.exitCode, exit.signal], [137, 9]);
    assert.ok(elapsed >= 1500, `killed after ${elapsed} ms, before the 1500 ms grace period`);
    assert.ok((await f.output('c1')).includes('got TERM'));
  });

  it('stops at once with SIGTERM when the process handles it by exiting', async () => {
    const bundle = await f.bundle(['sh', '-c', 'trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done']);
    await f.runtime.create('c1', bundle, { start: true });
    await waitForOutput(f, 'c1', 'ready');
    const exit = await f.runtime.stop('c1', { timeoutMs: 20_000 });
    assert.deepEqual([exit.exitCode, exit.reason], [0, 'Completed']);
  });

  it('reports OOMKilled when a process exceeds its memory limit', async () => {
    const { exit } = await f.runToExit('c1', ['tail', '/dev/zero'], { resources: { memoryBytes: 16 * 1024 * 1024 } });
    assert.equal(exit.reason, 'OOMKilled');
    assert.equal(exit.oomKilled, true);
    assert.equal(exit.exitCode, 137);
  });

  it('holds a fork bomb at the pids limit', async () => {
    // Every subshell forks two more until the kernel refuses; pid 1 survives and sleeps.
    const bomb = 'bomb() { bomb | bomb & }; bomb; echo started; exec sleep 60';
    await f.runtime.create('c1', await f.bundle(['sh', '-c', bomb], { resources: { pidsLimit: 20 } }), { start: true });
    const { cgroup } = JSON.parse(await readFile(`${f.root}/c1/state.json`, 'utf8')) as { cgroup: { dirs: Record<string, string> } };
    const refused = async () => Number(/max (\d+)/.exec(await readFile(`${cgroup.dirs['pids']}/pids.events`, 'utf8'))?.[1] ?? 0);
    const deadline = Date.now() + 20_000;
    while ((await refused()) < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok((await refused()) >= 10, 'the kernel refused forks at the limit');
    const stats = await f.runtime.stats('c1');
    assert.equal(stats.pidsMax, 20);
    assert.ok(stats.pidsCurrent <= 20, `pids.current ${stats.pidsCurrent}`);
    assert.equal((await f.runtime.state('c1')).status, 'running');
  });

  it('changes memory, cpu and pids limits of a running container when updated', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60'], { resources: { memoryBytes: 64 << 20, pidsLimit: 50, cpus: 1 } }), { start: true });
    const { cgroup } = JSON.parse(await readFile(`${f.root}/c1/state.json`, 'utf8')) as { cgroup: { dirs: Record<string, string> } };
    const read = async (c: string, file: string) => (await readFile(`${cgroup.dirs[c]}/${file}`, 'utf8')).trim();
    assert.equal(await read('memory', 'memory.limit_in_bytes'), String(64 << 20));
    assert.equal(await read('pids', 'pids.max'), '50');
    assert.equal(await read('cpu', 'cpu.cfs_quota_us'), '100000');

    await f.runtime.update('c1', { memoryBytes: 128 << 20, cpuQuotaUs: 50000, cpuPeriodUs: 100000, pidsMax: 100 });
    assert.equal(await read('memory', 'memory.limit_in_bytes'), String(128 << 20));
    assert.equal(await read('cpu', 'cpu.cfs_quota_us'), '50000');
    assert.equal(await read('pids', 'pids.max'), '100');
    const stats = await f.runtime.stats('c1');
    assert.equal(stats.memoryLimitBytes, 128 << 20);
    assert.ok(stats.cpuUsageNs > 0, 'cpuacct.usage counts the container');
    assert.equal(stats.pidsMax, 100);
    assert.ok(stats.pidsCurrent >= 1);
    assert.ok(stats.memoryUsageBytes > 0);
    assert.equal((await f.runtime.state('c1')).status, 'running');
    assert.equal((await f.runtime.state('c1')).resources.memoryBytes, 128 << 20);
  });

  it('captures stdout and stderr with timestamps and stream per line', async () => {
    const before = Date.now() - 1000;
    await f.runToExit('c1', ['sh', '-c', 'echo out1; echo err1 >&2; echo out2; printf tail']);
    const entries: LogEntry[] = [];
    for await (const e of f.runtime.logs('c1')) entries.push(e);
    const byStream = (s: string) => entries.filter((e) => e.stream === s).map((e) => e.text);
    assert.deepEqual(byStream('stdout'), ['out1', 'out2', 'tail']);
    assert.deepEqual(byStream('stderr'), ['err1']);
    for (const e of entries) {
      assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      assert.ok(Date.parse(e.time) >= before && Date.parse(e.time) <= Date.now() + 1000);
    }
    const tail = [];
    for await (const e of f.runtime.logs('c1', { tail: 2 })) tail.push(e.text);
    assert.equal(tail.length, 2);
    const future = [];
    for await (const e of f.runtime.logs('c1', { since: new Date(Date.now() + 60_000) })) future.push(e.text);
    assert.deepEqual(future, []);
    const recent = [];
    for await (const e of f.runtime.logs('c1', { since: parseSince('10m') })) recent.push(e.text);
    assert.equal(recent.length, 4);
  });

  it('rotates the log by size, keeping the configured number of files', async () => {
    const bundle = await f.bundle(['sh', '-c', 'i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done']);
    await f.runtime.create('c1', bundle, { start: true, logMaxBytes: 2000, logMaxFiles: 3 });
    await f.runtime.wait('c1', { timeoutMs: 10_000 });
    const dir = `${f.root}/c1`;
    assert.ok(existsSync(`${dir}/container.log`) && existsSync(`${dir}/container.log.1`) && existsSync(`${dir}/container.log.2`));
    assert.ok(!existsSync(`${dir}/container.log.3`));
    for (const n of ['container.log', 'container.log.1', 'container.log.2']) {
      assert.ok((await readFile(`${dir}/${n}`)).length <= 2000, `${n} is larger than 2000 bytes`);
    }
    const lines = await f.output('c1');
    assert.equal(lines[lines.length - 1], 'line-299');
    const first = Number(lines[0]?.slice(5));
    assert.deepEqual(lines, Array.from({ length: 300 - first }, (_, i) => `line-${first + i}`), 'lines are contiguous and in order');
  });

  it('follows the log across rotations without losing or repeating lines', async () => {
    const bundle = await f.bundle(['sh', '-c', 'i=0; while [ $i -lt 120 ]; do echo line-$i-padding-padding; i=$((i+1)); sleep 0.01; done']);
    await f.runtime.create('c1', bundle, { start: true, logMaxBytes: 1500, logMaxFiles: 3 });
    const seen: string[] = [];
    for await (const e of f.runtime.logs('c1', { follow: true, pollMs: 5 })) seen.push(e.text);
    assert.deepEqual(seen, Array.from({ length: 120 }, (_, i) => `line-${i}-padding-padding`));
    assert.ok(existsSync(`${f.root}/c1/container.log.2`), 'the log rotated at least twice');
  });

  it('follows the log until the container exits', async () => {
    const bundle = await f.bundle(['sh', '-c', 'echo a; sleep 0.5; echo b; sleep 0.5; echo c']);
    await f.runtime.create('c1', bundle, { start: true });
    const seen = [];
    for await (const e of f.runtime.logs('c1', { follow: true, pollMs: 20 })) seen.push(e.text);
    assert.deepEqual(seen, ['a', 'b', 'c']);
  });

  it('reports a clear error and leaves nothing when the executable does not exist', async () => {
    const bundle = await f.bundle(['no-such-program']);
    await assert.rejects(f.runtime.create('c1', bundle), /executable "no-such-program" not found in \$PATH/);
    assert.deepEqual(await f.runtime.list(), []);
    assert.ok(!existsSync(`${f.root}/c1`));
  });

  it('rejects a second container with the same id', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60']));
    await assert.rejects(f.runtime.create('c1', await f.bundle(['true'])), { name: 'AlreadyExistsError' });
  });

  it('refuses to delete a running container without force, and kills it with force', async () => {
    await f.runtime.create('c1', await f.bundle(['sleep', '60']), { start: true });
    await assert.rejects(f.runtime.delete('c1'), /it is running; stop it first/);
    await f.runtime.delete('c1', { force: true });
    await assert.rejects(f.runtime.state('c1'), { name: 'ContainerNotFoundError' });
  });
});

async function waitForOutput(f: RuntimeFixture, id: string, line: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await f.output(id)).includes(line)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`container ${id} did not print "${line}" within ${timeoutMs} ms`);
}
