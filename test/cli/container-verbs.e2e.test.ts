import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistryWithImages, waitFor, type RegistryWithImages } from '../harness/index.js';
import { BERTH_JS, cleanEnv } from './helpers.js';
import { startCluster, type TestCluster } from './cluster.js';

interface Inspected {
  Id: string;
  Name: string;
  Node: string;
  Config: { Image: string; Cmd: string[]; Env: string[]; WorkingDir: string; User: string; Labels: Record<string, string> };
  State: { Status: string; Running: boolean; Pid: number; ExitCode: number; Reason: string; StartedAt: string; FinishedAt: string };
  RestartCount: number;
  Limits: { MemoryBytes: number; CpuMillis: number; PidsLimit: number };
  LogPath: string;
  Rootfs: string;
  Mounts: unknown[];
}

/** The host directory of a process's cgroup in a v1 controller hierarchy (or v2 when that is all there is). */
function cgroupDir(pid: number, controller: string): string {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, controllers = '', path = ''] = line.split(':');
    if (controllers.split(',').includes(controller)) return join('/sys/fs/cgroup', controller, path);
  }
  const v2 = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (v2) return join('/sys/fs/cgroup', v2.slice(3));
  throw new Error(`no ${controller} cgroup for pid ${pid}`);
}

describe('cli container verbs: start, restart, kill, wait, rename, inspect, top, update, stats, cp (real cluster and containers)', function () {
  this.timeout(240_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let image = '';
  let local = '';

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    assert.ok(image, 'busybox was pushed');
    cluster = await startCluster();
    await cluster.startReadyAgent('node-1');
  });

  after(async () => {
    await cluster?.stop();
    await reg?.stop();
  });

  beforeEach(() => {
    local = mkdtempSync(join(tmpdir(), 'berth-test-verbs-'));
  });

  afterEach(() => {
    rmSync(local, { recursive: true, force: true });
  });

  function cli(args: string[], stdin?: string): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args, stdin !== undefined ? { stdin } : {});
  }

  async function inspect(name: string): Promise<Inspected> {
    const r = await cli(['inspect', name]);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as Inspected[];
    assert.equal(list.length, 1);
    return list[0] as Inspected;
  }

  async function runDetached(name: string, args: string[], flags: string[] = []): Promise<string> {
    const r = await cli(['run', '-d', '--name', name, ...flags, image, ...args]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(`${name} to run`, async () => (await inspect(name)).State.Status !== 'pending', 60_000, 300);
    return r.stdout.trim();
  }

  it('prints usage for --help of every verb', async () => {
    for (const verb of ['start', 'restart', 'kill', 'wait', 'rename', 'inspect', 'top', 'update', 'stats', 'cp']) {
      const r = await cli([verb, '--help']);
      assert.equal(r.code, 0, `${verb}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: berth ${verb} `), verb);
      assert.match(r.stdout, /Examples:/, verb);
    }
  });

  it('waits for a container and prints its exit code, then starts it again over the same filesystem', async () => {
    await runDetached('counter', ['sh', '-c', 'echo x >> /count; wc -l < /count; sleep 1; exit 3']);
    const first = await inspect('counter');
    const wait = await cli(['wait', 'counter']);
    assert.equal(wait.code, 0, wait.stderr);
    assert.equal(wait.stdout, '3\n');
    const exited = await inspect('counter');
    assert.equal(exited.State.Status, 'exited');
    assert.equal(exited.State.ExitCode, 3);
    assert.equal(exited.State.Reason, 'Error');

    // An exited container answers at once; an unknown one fails with exit code 1, the others still print.
    const again = await cli(['wait', 'counter', 'no-such-container']);
    assert.equal(again.code, 1);
    assert.equal(again.stdout, '3\n');
    assert.match(again.stderr, /^error: .*no-such-container.*not found/m);

    const start = await cli(['start', 'counter']);
    assert.equal(start.code, 0, start.stderr);
    assert.equal(start.stdout, 'counter\n');
    const restarted = await inspect('counter');
    assert.equal(restarted.Id, first.Id, 'same id');
    assert.equal(restarted.Rootfs, first.Rootfs, 'same root filesystem');
    assert.equal((await cli(['wait', exited.Id.slice(0, 10)])).stdout, '3\n');
    // The second run found the first run's file: the count went to 2.
    const logs = await cli(['logs', 'counter']);
    assert.equal(logs.stdout, '1\n2\n', logs.stderr);
    assert.equal((await cli(['start', 'no-such-container'])).code, 1);
  });

  it('kills with a signal by name or number, refuses unknown signals, and restarts with -t', async () => {
    await runDetached('target', ['sh', '-c', 'trap "echo got HUP" HUP; while true; do sleep 0.2; done']);
    for (const bad of ['BOGUS', '99', '-3', '']) {
      const r = await cli(['kill', '-s', bad, 'target']);
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /^error: -s, --signal: /, bad);
    }
    assert.equal((await inspect('target')).State.Status, 'running', 'a refused kill changes nothing');

    const hup = await cli(['kill', '-s', 'HUP', 'target']);
    assert.equal(hup.code, 0, hup.stderr);
    assert.equal(hup.stdout, 'target\n');
    await waitFor('the HUP trap to run', async () => (await cli(['logs', 'target'])).stdout.includes('got HUP'), 20_000, 300);
    assert.equal((await inspect('target')).State.Status, 'running');

    const before = await inspect('target');
    const restart = await cli(['restart', '-t', '1', 'target']);
    assert.equal(restart.code, 0, restart.stderr);
    assert.equal(restart.stdout, 'target\n');
    const after = await inspect('target');
    assert.equal(after.State.Status, 'running');
    assert.notEqual(after.State.Pid, before.State.Pid);
    assert.equal((await cli(['restart', '-t', 'soon', 'target'])).code, 2);

    const kill = await cli(['kill', '--signal', '9', 'target']);
    assert.equal(kill.code, 0, kill.stderr);
    const wait = await cli(['wait', 'target']);
    assert.equal(wait.stdout, '137\n');
    const refused = await cli(['kill', 'target']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error: failed to kill container "target": it is not running/m);
  });

  it('renames a container, refusing a name in use; inspect shows config, state, limits, node and log path', async () => {
    await runDetached('first', ['sleep', '600'], ['-e', 'GREETING=hi', '-w', '/tmp', '-u', '1000', '-l', 'team=core', '-m', '64Mi']);
    await runDetached('second', ['sleep', '600']);
    const clash = await cli(['rename', 'first', 'second']);
    assert.equal(clash.code, 1);
    assert.match(clash.stderr, /^error: failed to rename container "first" to "second": the name is already used/m);
    assert.equal((await inspect('first')).Name, 'first', 'unchanged after a refused rename');
    assert.equal((await cli(['rename', 'first', 'Bad_Name!'])).code, 1);

    const ok = await cli(['rename', 'first', 'renamed']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, '');
    assert.equal((await cli(['inspect', 'first'])).code, 1);
    const d = await inspect('renamed');
    assert.equal(d.Name, 'renamed');
    assert.match(d.Id, /^[0-9a-f]{64}$/);
    assert.equal(d.Node, 'node-1');
    assert.equal(d.Config.Image, image);
    assert.deepEqual(d.Config.Cmd, ['sleep', '600']);
    assert.ok(d.Config.Env.includes('GREETING=hi'), JSON.stringify(d.Config.Env));
    assert.equal(d.Config.WorkingDir, '/tmp');
    assert.equal(d.Config.User, '1000');
    assert.deepEqual(d.Config.Labels, { team: 'core' });
    assert.equal(d.State.Status, 'running');
    assert.equal(d.State.Running, true);
    assert.ok(d.State.Pid > 0);
    assert.match(d.State.StartedAt, /^\d{4}-/);
    assert.equal(d.Limits.MemoryBytes, 64 * 1024 * 1024);
    assert.equal(d.RestartCount, 0);
    assert.ok(d.LogPath.endsWith('container.log') && existsSync(d.LogPath), d.LogPath);
    assert.deepEqual(d.Mounts, []);
    const ps = await cli(['ps']);
    assert.match(ps.stdout, /\srenamed\s/);

    // Two names at once, by name and id prefix; an unknown one is an error after the others are printed.
    const two = await cli(['inspect', 'renamed', (await inspect('second')).Id.slice(0, 8), 'ghost']);
    assert.equal(two.code, 1);
    assert.deepEqual((JSON.parse(two.stdout) as Inspected[]).map((x) => x.Name), ['renamed', 'second']);
    assert.match(two.stderr, /ghost/);
    assert.equal((await cli(['inspect', '--format', '{{.Id}}', 'renamed'])).code, 2);
  });

  it('lists the processes of a running container with top', async () => {
    await runDetached('topper', ['sh', '-c', 'sleep 600 & sleep 500']);
    await waitFor('both sleeps', async () => {
      const r = await cli(['top', 'topper']);
      return r.code === 0 && r.stdout.includes('sleep 600') && r.stdout.includes('sleep 500');
    }, 20_000, 300);
    const r = await cli(['top', 'topper']);
    const [header, ...rows] = r.stdout.trimEnd().split('\n');
    assert.match(header ?? '', /^PID\s+USER\s+TIME\s+CMD$/);
    const row = rows.find((l) => l.endsWith('sleep 600'));
    assert.ok(row, r.stdout);
    assert.match(row, /^\d+\s+root\s+\d\d:\d\d:\d\d\s+sleep 600$/);
    // sh execs its last command: two processes, both sleeps.
    assert.equal(rows.length, 2, r.stdout);
    await cli(['kill', 'topper']);
    await cli(['wait', 'topper']);
    const stopped = await cli(['top', 'topper']);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /not running/);
  });

  it('updates limits of a running container live, and refuses bad values changing nothing', async () => {
    await runDetached('limited', ['sleep', '600'], ['-m', '64Mi', '--cpus', '1', '--pids-limit', '50']);
    const pid = (await inspect('limited')).State.Pid;
    const mem = join(cgroupDir(pid, 'memory'), 'memory.limit_in_bytes');
    const pids = join(cgroupDir(pid, 'pids'), 'pids.max');
    const quota = join(cgroupDir(pid, 'cpu'), 'cpu.cfs_quota_us');
    assert.equal(readFileSync(mem, 'utf8').trim(), String(64 * 1024 * 1024));

    for (const [args, message] of [
      [['--cpus', '-1'], /^error: --cpus: .*"-1"/],
      [['-m', '12XB'], /^error: -m, --memory: .*"12XB"/],
      [['--memory', '1Ki'], /^error: -m, --memory: expected at least 4Mi/],
      [['--pids-limit', 'many'], /^error: --pids-limit: .*"many"/],
      [[], /^error: expected at least one of -m\/--memory, --cpus or --pids-limit/],
    ] as const) {
      const r = await cli(['update', ...args, 'limited']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.equal(readFileSync(mem, 'utf8').trim(), String(64 * 1024 * 1024), 'unchanged after bad input');

    const r = await cli(['update', '--memory', '128Mi', '--cpus', '0.5', '--pids-limit', '100', 'limited']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'limited\n');
    assert.equal(readFileSync(mem, 'utf8').trim(), String(128 * 1024 * 1024));
    assert.equal(readFileSync(pids, 'utf8').trim(), '100');
    assert.equal(readFileSync(quota, 'utf8').trim(), '50000');
    const d = await inspect('limited');
    assert.equal(d.State.Pid, pid, 'not restarted');
    assert.deepEqual(d.Limits, { MemoryBytes: 128 * 1024 * 1024, CpuMillis: 500, NanoCpus: 500_000_000, PidsLimit: 100 });

    // The new limits stay for the next start.
    await cli(['kill', 'limited']);
    await cli(['wait', 'limited']);
    assert.equal((await cli(['start', 'limited'])).code, 0);
    const pid2 = (await inspect('limited')).State.Pid;
    assert.equal(readFileSync(join(cgroupDir(pid2, 'memory'), 'memory.limit_in_bytes'), 'utf8').trim(), String(128 * 1024 * 1024));
    assert.equal((await cli(['update', '-m', '64Mi', 'ghost'])).code, 1);
    // --pids is the same as --pids-limit (the spelling of issue 4).
    assert.equal((await cli(['update', '--pids', '120', 'limited'])).code, 0);
    assert.equal(readFileSync(join(cgroupDir(pid2, 'pids'), 'pids.max'), 'utf8').trim(), '120');
  });

  it('shows non-zero stats for a busy container, once with --no-stream and refreshing without it', async () => {
    await runDetached('busy', ['sh', '-c', 'while :; do :; done'], ['-m', '256Mi']);
    const json = await cli(['stats', '--no-stream', '--format', 'json', 'busy']);
    assert.equal(json.code, 0, json.stderr);
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 1);
    const s = lines[0] as { Name: string; CpuPercent: number; MemoryUsageBytes: number; MemoryLimitBytes: number; Pids: number; CPUPerc: string; MemUsage: string };
    assert.equal(s.Name, 'busy');
    assert.ok(s.CpuPercent > 10, `cpu ${s.CpuPercent}`);
    assert.ok(s.MemoryUsageBytes > 0);
    assert.equal(s.MemoryLimitBytes, 256 * 1024 * 1024);
    assert.ok(s.Pids >= 1);
    assert.match(s.CPUPerc, /^\d+\.\d\d%$/);
    assert.match(s.MemUsage, / \/ 256MiB$/);

    const table = await cli(['stats', '--no-stream']);
    assert.equal(table.code, 0, table.stderr);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    assert.match(header ?? '', /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+PIDS\s+NODE$/);
    assert.ok(rows.some((l) => /\sbusy\s+\d+\.\d\d%\s+\S+ \/ 256MiB\s+\d+\.\d\d%\s+\d+\s+node-1$/.test(l)), table.stdout);
    assert.equal((await cli(['stats', '--format', 'yaml', '--no-stream'])).code, 2);

    // Streaming: one table per second on a pipe, until stopped.
    const child = spawn(process.execPath, [BERTH_JS, 'stats', 'busy'], { env: cleanEnv({ BERTH_CONTROLLER: cluster?.address ?? '' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('two samples', () => (out.match(/CONTAINER ID/g) ?? []).length >= 2, 20_000, 100);
    } finally {
      child.kill('SIGKILL');
    }
    await cli(['kill', 'busy']);
    await cli(['wait', 'busy']);
    // -a includes containers that are not running, without numbers.
    const all = await cli(['stats', '-a', '--no-stream', '--format', 'json']);
    assert.equal(all.code, 0, all.stderr);
    const exited = all.stdout.trim().split('\n').map((l) => JSON.parse(l) as { Name: string; State: string; CPUPerc: string }).find((x) => x.Name === 'busy');
    assert.deepEqual(exited && { State: exited.State, CPUPerc: exited.CPUPerc }, { State: 'exited', CPUPerc: '--' });
    const running = await cli(['stats', '--no-stream', '--format', 'json']);
    assert.ok(!running.stdout.includes('"Name":"busy"'), running.stdout);
  });

  it('copies files and directories both ways with content and mode, and refuses symlink escapes', async () => {
    await runDetached('box', ['sh', '-c', 'mkdir -p /data/sub && echo inside > /data/sub/file && chmod 0751 /data/sub/file && ln -s / /escape && ln -s /etc/passwd /data/link && sleep 600']);
    await waitFor('the setup to finish', async () => (await cli(['cp', 'box:/data/link', join(local, 'probe')])).code === 0, 20_000, 300);

    // Container -> local: a directory (into an existing directory) and a file (to a new name).
    const dir = await cli(['cp', 'box:/data', local]);
    assert.equal(dir.code, 0, dir.stderr);
    assert.equal(readFileSync(join(local, 'data/sub/file'), 'utf8'), 'inside\n');
    assert.equal(statSync(join(local, 'data/sub/file')).mode & 0o777, 0o751);
    assert.ok(lstatSync(join(local, 'data/link')).isSymbolicLink(), 'a symlink is copied as a symlink');
    assert.equal(readlinkSync(join(local, 'data/link')), '/etc/passwd');
    const file = await cli(['cp', 'box:data/sub/file', join(local, 'renamed.txt')]);
    assert.equal(file.code, 0, file.stderr);
    assert.equal(readFileSync(join(local, 'renamed.txt'), 'utf8'), 'inside\n');

    // Local -> container: a file with its mode, and a directory tree.
    writeFileSync(join(local, 'up.txt'), 'from the host\n');
    chmodSync(join(local, 'up.txt'), 0o640);
    mkdirSync(join(local, 'tree/deeper'), { recursive: true });
    writeFileSync(join(local, 'tree/deeper/leaf'), 'leaf\n');
    chmodSync(join(local, 'tree/deeper'), 0o700);
    const upFile = await cli(['cp', join(local, 'up.txt'), 'box:/tmp/']);
    assert.equal(upFile.code, 0, upFile.stderr);
    const upTree = await cli(['cp', join(local, 'tree'), 'box:/tmp/tree']);
    assert.equal(upTree.code, 0, upTree.stderr);
    const check = await cli(['cp', 'box:/tmp/up.txt', join(local, 'back.txt')]);
    assert.equal(check.code, 0, check.stderr);
    assert.equal(readFileSync(join(local, 'back.txt'), 'utf8'), 'from the host\n');
    assert.equal(statSync(join(local, 'back.txt')).mode & 0o777, 0o640);
    assert.equal((await cli(['cp', 'box:/tmp/tree', join(local, 'tree2')])).code, 0);
    assert.equal(readFileSync(join(local, 'tree2/deeper/leaf'), 'utf8'), 'leaf\n');
    assert.equal(statSync(join(local, 'tree2/deeper')).mode & 0o777, 0o700);

    // A large file both ways (flow control through controller and agent).
    const big = randomBytes(24 * 1024 * 1024);
    writeFileSync(join(local, 'big.bin'), big);
    const bigUp = await cli(['cp', join(local, 'big.bin'), 'box:/tmp/big.bin']);
    assert.equal(bigUp.code, 0, bigUp.stderr);
    const bigDown = await cli(['cp', 'box:/tmp/big.bin', join(local, 'big-back.bin')]);
    assert.equal(bigDown.code, 0, bigDown.stderr);
    assert.ok(readFileSync(join(local, 'big-back.bin')).equals(big), 'the large file came back unchanged');

    // Escapes through a symlink of the container are refused both ways; nothing lands on the host.
    const hostTarget = mkdtempSync(join(tmpdir(), 'berth-test-escape-'));
    try {
      const into = await cli(['cp', join(local, 'up.txt'), `box:/escape${hostTarget}/`]);
      assert.equal(into.code, 1, into.stdout);
      assert.match(into.stderr, /^error: .*"\/escape" is a symbolic link/m);
      assert.deepEqual(readdirSync(hostTarget), []);
      const out = await cli(['cp', 'box:/escape/etc/hostname', join(local, 'stolen')]);
      assert.equal(out.code, 1);
      assert.match(out.stderr, /symbolic link/);
      assert.ok(!existsSync(join(local, 'stolen')));
      assert.equal((await cli(['cp', 'box:/../../etc/passwd', join(local, 'x')])).code, 1);
    } finally {
      rmSync(hostTarget, { recursive: true, force: true });
    }

    // Usage errors: two local paths, two containers, a missing local source.
    assert.equal((await cli(['cp', join(local, 'a'), join(local, 'b')])).code, 2);
    assert.equal((await cli(['cp', 'box:/a', 'box:/b'])).code, 2);
    assert.equal((await cli(['cp', join(local, 'missing'), 'box:/tmp/'])).code, 2);
    await cli(['rm', '-f', 'box']);
  });

  it('refuses to copy on or above a volume mount (cp sees the container\'s own filesystem only)', async () => {
    await runDetached('mounted', ['sleep', '600'], ['-v', 'cpvol:/srv/data']);
    writeFileSync(join(local, 'f'), 'x');
    for (const args of [[join(local, 'f'), 'mounted:/srv/data/'], ['mounted:/srv/data', local], ['mounted:/srv', local]]) {
      const r = await cli(['cp', ...args]);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, /^error: failed to copy "\/srv(\/data)?\/?" in container "mounted": it is on or holds the mount "\/srv\/data"/m, args.join(' '));
    }
    const hostname = await cli(['cp', 'mounted:/etc/hostname', join(local, 'hostname')]);
    assert.equal(hostname.code, 1);
    assert.match(hostname.stderr, /the agent provides it/);
    const ok = await cli(['cp', 'mounted:/etc/passwd', join(local, 'passwd')]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(readFileSync(join(local, 'passwd'), 'utf8'), /^root:/);
    await cli(['rm', '-f', 'mounted']);
  });
});
