import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistryWithImages, waitFor, type RegistryWithImages } from '../harness/index.js';
import { spawn } from 'node:child_process';
import { BERTH_JS, cleanEnv } from './helpers.js';
import { startCluster, type TestCluster } from './cluster.js';

interface ContainerJson {
  id: string;
  name: string;
  node?: string;
  status?: { state?: string; exitCode?: number };
}

describe('cli container verbs end to end (real etcd, NATS, controller, agent, registry and containers)', function () {
  this.timeout(180_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let image = '';

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    image = reg.images['busybox']?.reference ?? '';
    assert.ok(image, 'busybox was pushed');
  });

  after(async () => {
    await reg?.stop();
  });

  beforeEach(async () => {
    cluster = await startCluster();
    await cluster.startReadyAgent('node-1');
  });

  afterEach(async () => {
    // Stops agents, controller, NATS and etcd, then removes the agents' containers and roots.
    await cluster?.stop();
    cluster = undefined;
  });

  function cli(args: string[]): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  }

  async function ps(all = true): Promise<ContainerJson[]> {
    const r = await cli(['ps', ...(all ? ['-a'] : []), '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ContainerJson[];
  }

  it('runs a detached container, lists it in ps and ps -q, refuses rm without -f and removes it with -f', async () => {
    const run = await cli(['run', '-d', '--name', 'sleeper', '-l', 'app=test', image, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    const id = run.stdout.trim();
    assert.match(id, /^\S+$/);

    await waitFor('sleeper to run', async () => (await ps(false)).some((c) => c.name === 'sleeper' && c.status?.state === 'CONTAINER_STATE_RUNNING'), 60_000, 500);

    const table = await cli(['ps']);
    assert.equal(table.code, 0, table.stderr);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    assert.match(header ?? '', /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\s+NODE\s+IP$/);
    const row = rows.find((l) => l.includes('sleeper'));
    assert.ok(row, table.stdout);
    assert.ok(row.startsWith(id.slice(0, 12)), row);
    assert.match(row, /"sleep 600"/);
    assert.match(row, /\bUp /);
    assert.match(row, /node-1\s+-$/);

    const quiet = await cli(['ps', '-q']);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.deepEqual(quiet.stdout.trim().split('\n'), [id.slice(0, 12)]);

    const filtered = await cli(['ps', '-q', '--filter', 'status=exited']);
    assert.equal(filtered.code, 0, filtered.stderr);
    assert.equal(filtered.stdout, '');

    const replicas = await cli(['get', 'containers']);
    assert.equal(replicas.code, 0, replicas.stderr);
    assert.match(replicas.stdout, /^NAME\s+WORKLOAD\s+NODE\s+STATE\s+HEALTH\s+RESTARTS\s+AGE\n/);
    assert.match(replicas.stdout, /sleeper\s+-\s+node-1\s+running/);

    const refused = await cli(['rm', 'sleeper']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error: .*sleeper.*running/m);
    assert.ok((await ps()).some((c) => c.name === 'sleeper'), 'still there after a refused rm');

    const removed = await cli(['rm', '-f', 'sleeper']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /sleeper/);
    await waitFor('sleeper to be gone', async () => !(await ps()).some((c) => c.name === 'sleeper' && c.status?.state !== 'CONTAINER_STATE_REMOVED'), 30_000, 500);
  });

  it('prints the output of an echo container with logs, and exits with the exit code of a foreground run', async () => {
    const run = await cli(['run', '-d', '--name', 'echoer', '-e', 'WORD=berth', image, '--', 'sh', '-c', 'echo hello $WORD; echo oops >&2']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('echoer to exit', async () => (await ps()).some((c) => c.name === 'echoer' && c.status?.state === 'CONTAINER_STATE_EXITED'), 60_000, 500);

    const logs = await cli(['logs', 'echoer']);
    assert.equal(logs.code, 0, logs.stderr);
    assert.equal(logs.stdout, 'hello berth\n');
    assert.equal(logs.stderr, 'oops\n');

    const byPrefix = await cli(['logs', '--timestamps', run.stdout.trim().slice(0, 8)]);
    assert.equal(byPrefix.code, 0, byPrefix.stderr);
    assert.match(byPrefix.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z hello berth\n$/);

    const exited = await cli(['ps', '-a']);
    assert.match(exited.stdout, /echoer/);
    assert.match(exited.stdout, /Exited \(0\)/);

    const fg = await cli(['run', '--name', 'fg', image, 'sh', '-c', 'echo in the foreground; exit 3']);
    assert.equal(fg.stdout, 'in the foreground\n', fg.stderr);
    assert.equal(fg.code, 3, fg.stderr);
    assert.match((await cli(['ps', '-a'])).stdout, /\sfg\s/);

    const gone = await cli(['run', '--rm', '--name', 'gone', image, 'sh', '-c', 'exit 4']);
    assert.equal(gone.code, 4, gone.stderr);
    assert.ok(!(await ps()).some((c) => c.name === 'gone' && c.status?.state !== 'CONTAINER_STATE_REMOVED'), 'removed after --rm');
  });

  it('stops a running container with SIGTERM and a grace period, and stops an attached run on Ctrl-C', async () => {
    const run = await cli(['run', '-d', '--name', 'stubborn', image, 'sleep', '600']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('stubborn to run', async () => (await ps(false)).some((c) => c.name === 'stubborn'), 60_000, 500);
    // sleep as pid 1 ignores SIGTERM, so the stop ends with SIGKILL after the 1 s grace period.
    const stop = await cli(['stop', '-t', '1', 'stubborn']);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, 'stubborn\n');
    await waitFor('stubborn to show as exited 137', async () => (await ps()).some((c) => c.name === 'stubborn' && c.status?.state === 'CONTAINER_STATE_EXITED' && c.status.exitCode === 137), 30_000, 500);
    assert.equal((await cli(['stop', '-t', 'soon', 'stubborn'])).code, 2);
    assert.equal((await cli(['stop', 'no-such-container'])).code, 1);

    // An attached run: the first Ctrl-C (SIGINT to the CLI) stops the container, whose TERM trap exits 143.
    const child = spawn(process.execPath, [BERTH_JS, 'run', '--name', 'attached', image, 'sh', '-c', 'trap "echo got TERM; exit 143" TERM; echo ready; while true; do sleep 0.2; done'],
      { env: cleanEnv({ BERTH_CONTROLLER: cluster?.address ?? '' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      await waitFor('the attached container to print ready', () => out.includes('ready'), 60_000, 100);
      child.kill('SIGINT');
      const code = await exited;
      assert.equal(code, 143, `stdout: ${out}\nstderr: ${err}`);
      assert.match(out, /got TERM/);
      assert.match(err, /stopping container "attached"/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('rejects bad flag values before creating anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-test-cli-run-'));
    const badEnvFile = join(dir, 'bad.env');
    writeFileSync(badEnvFile, '# comment\nnot a variable\n');
    try {
      await rejectsAll(badEnvFile);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(await ps(), []);
  });

  async function rejectsAll(badEnvFile: string): Promise<void> {
    for (const [args, message] of [
      [['-m', '12XB'], /^error: -m, --memory: .*"12XB"/],
      [['--cpus', '-1'], /^error: --cpus: .*"-1"/],
      [['--restart', 'sometimes'], /^error: --restart: expected one of always, on-failure, never, got "sometimes"/],
      [['--pids-limit', 'many'], /^error: --pids-limit: .*"many"/],
      [['-e', '1BAD=x'], /^error: -e, --env: /],
      [['--env-file', badEnvFile], /^error: --env-file .*bad\.env:2: expected KEY=VALUE/],
    ] as const) {
      const r = await cli(['run', '-d', '--name', 'never', ...args, image, 'true']);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    }
  }

  it('pulls a missing image for an attached run with per-layer progress on stderr, then runs it; a second run pulls nothing', async () => {
    const first = await cli(['run', '--rm', image, 'echo', 'hi']);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, 'hi\n');
    assert.match(first.stderr, new RegExp(`^Unable to find image "${image.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" on node node-1: pulling\n`));
    assert.match(first.stderr, /^[0-9a-f]{12}: Pull complete$/m);
    const second = await cli(['run', '--rm', image, 'echo', 'again']);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, 'again\n');
    assert.equal(second.stderr, '');
    assert.deepEqual(await ps(), []);
  });

  it('shows the client, controller and each agent version in berth version', async () => {
    const r = await cli(['version', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const v = JSON.parse(r.stdout) as { client: { version: string }; server: { version: string }; agents: { node: string; version: string; status: string }[] };
    assert.equal(v.server.version, v.client.version);
    assert.deepEqual(v.agents, [{ node: 'node-1', version: v.client.version, status: 'Ready' }]);
    const text = await cli(['version']);
    assert.match(text.stdout, new RegExp(`\nAgent node-1: ${v.client.version.replace(/\./g, '\\.')} \\(Ready\\)\n$`));
  });

  it('shows a cordoned node in get nodes, and uncordons it', async () => {
    const cordon = await cli(['node', 'cordon', 'node-1']);
    assert.equal(cordon.code, 0, cordon.stderr);
    assert.equal(cordon.stdout, 'node/node-1 cordoned\n');
    const nodes = await cli(['get', 'nodes']);
    assert.match(nodes.stdout, /node-1\s+Ready,Cordoned/);

    const uncordon = await cli(['node', 'uncordon', 'node-1']);
    assert.equal(uncordon.code, 0, uncordon.stderr);
    assert.doesNotMatch((await cli(['get', 'nodes'])).stdout, /Cordoned/);

    const unknown = await cli(['node', 'cordon', 'no-such-node']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no-such-node/);
  });

  it('describes a workload with its replicas per node, history and events, and prints the logs of its replicas prefixed', async () => {
    const manifest = ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  replicas: 1', `  image: ${image}`, '  command: ["sh", "-c", "echo ready; sleep 600"]', ''].join('\n');
    // `events -f` started before the workload exists must print its Started event as it happens.
    const follower = spawn(process.execPath, [BERTH_JS, 'events', '-f'], { env: cleanEnv({ BERTH_CONTROLLER: cluster?.address ?? '' }), stdio: ['ignore', 'pipe', 'pipe'] });
    let followed = '';
    follower.stdout.on('data', (d: Buffer) => (followed += d.toString()));
    follower.stderr.on('data', (d: Buffer) => (followed += d.toString()));
    try {
      const applied = await cluster?.cli(['apply', '-f', '-'], { stdin: manifest });
      assert.equal(applied?.code, 0, applied?.stderr);
      await waitFor('a web replica to run', async () => (await ps(false)).some((c) => c.status?.state === 'CONTAINER_STATE_RUNNING'), 60_000, 500);
      await waitFor('events -f to print the Started event', () => /Started\s+container\/web-/.test(followed), 30_000, 200);
      assert.match(followed, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+NODE\s+MESSAGE\n/);
      assert.equal(follower.exitCode, null, followed);
    } finally {
      if (follower.pid !== undefined && follower.exitCode === null) process.kill(follower.pid, 'SIGKILL');
    }
    const d = await cli(['describe', 'workload', 'web']);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /^Name:\s+web$/m);
    assert.match(d.stdout, /^Replicas per node:\n\s+NODE\s+RUNNING\s+OTHER\n\s+node-1\s+1\s+0$/m);
    assert.match(d.stdout, /^History:\n\s+REVISION/m);
    assert.match(d.stdout, /^Events:\n\s+LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+NODE\s+MESSAGE\n.*Scheduled\s+container\/web-/m);
    const events = await cli(['events', '--limit', '50']);
    assert.equal(events.code, 0, events.stderr);
    assert.match(events.stdout, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+NODE\s+MESSAGE\n\S/);
    assert.match(events.stdout, /Started\s+container\/web-\S+\s+node-1/);
    const limited = await cli(['events', '--limit', '1', '-o', 'json']);
    assert.equal((JSON.parse(limited.stdout) as unknown[]).length, 1);
    await waitFor('the replica to print "ready"', async () => /^\[web-\S+\] ready\n$/.test((await cli(['logs', 'workload/web'])).stdout), 30_000, 500);
    const replicas = await cli(['get', 'replicas', '-o', 'wide']);
    assert.match(replicas.stdout, /\sweb\s+node-1\s+running\s/);
    assert.equal((await cli(['delete', 'workload', 'web'])).code, 0);
  });
});
