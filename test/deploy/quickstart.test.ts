/**
 * README command 1 for real: deploy/quickstart.sh starts etcd, NATS, a
 * registry with the busybox demo image, a controller and an agent, applies
 * examples/hello.yaml and hello's replica runs; run again it only reports what
 * runs and leaves hello as the user changed it; `down --purge` stops every
 * process it started (containers included) and deletes its state dir.
 *
 * It runs on free ports in a temp state dir, so it never touches a
 * quickstart cluster a person left running on the default ports. The
 * install step is skipped (BERTH_QS_SKIP_INSTALL=1): the suite runs on a
 * built checkout already.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, makeTempDir, tryRun, type RunResult } from '../harness/index.js';
import { cleanupAgentContainers } from '../agent/containers/cleanup.js';

/** The checkout: this file is <out>/test/deploy/quickstart.test.js. */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SCRIPT = join(REPO, 'deploy', 'quickstart.sh');
const SERVICES = ['etcd', 'nats', 'registry', 'controller', 'agent'] as const;
const NODE = 'quickstart-test';

/** The process exists and is not a zombie (PID 1 may be slow to reap the services once their script exits). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Pids whose cwd or root lies under dir (what a leaked container or service would show). */
function processesUnder(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    for (const link of ['cwd', 'root']) {
      try {
        const target = readlinkSync(join('/proc', entry, link));
        if (target === dir || target.startsWith(`${dir}/`)) {
          found.push(Number(entry));
          break;
        }
      } catch {
        // the process exited or is not ours to inspect
      }
    }
  }
  return found;
}

/** Live shim and init pids recorded in the runtime state under the quickstart's dir. */
function containerProcesses(state: string): number[] {
  const root = join(state, 'runtime', 'runtime');
  if (!existsSync(root)) return [];
  const found: number[] = [];
  for (const id of readdirSync(root)) {
    for (const file of ['shim.pid', 'init.pid']) {
      try {
        const pid = Number(readFileSync(join(root, id, file), 'utf8').trim().split(/\s+/)[0]);
        if (Number.isInteger(pid) && pid > 0 && alive(pid)) found.push(pid);
      } catch {
        // not written (yet), or the attempt is gone
      }
    }
  }
  return found;
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((target) => target === dir || target.startsWith(`${dir}/`));
}

describe('deploy/quickstart.sh', function () {
  this.timeout(300_000);

  let state = '';
  let env: NodeJS.ProcessEnv = {};
  let controller = '';
  const pids = new Map<string, number>();

  function quickstart(...args: string[]): Promise<RunResult> {
    return tryRun('bash', [SCRIPT, ...args], { cwd: REPO, env, timeoutMs: 240_000 });
  }

  function output(res: RunResult): string {
    return `exit ${res.code}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`;
  }

  function readPids(): void {
    for (const name of SERVICES) {
      const file = join(state, 'run', `${name}.pid`);
      if (existsSync(file)) pids.set(name, Number(readFileSync(file, 'utf8').trim()));
    }
  }

  before(async function () {
    if (process.getuid?.() !== 0) this.skip();
    state = makeTempDir('quickstart');
    const ports = {
      BERTH_QS_ETCD_PORT: await freePort(),
      BERTH_QS_ETCD_PEER_PORT: await freePort(),
      BERTH_QS_NATS_PORT: await freePort(),
      BERTH_QS_NATS_MONITOR_PORT: await freePort(),
      BERTH_QS_REGISTRY_PORT: await freePort(),
      BERTH_QS_CONTROLLER_PORT: await freePort(),
      BERTH_QS_AGENT_PORT: await freePort(),
    };
    controller = `127.0.0.1:${ports.BERTH_QS_CONTROLLER_PORT}`;
    const base: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) {
      // Settings meant for a real cluster must not leak in; the test cache may.
      if (!k.startsWith('BERTH_') || k.startsWith('BERTH_TEST_')) base[k] = v;
    }
    env = {
      ...base,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      BERTH_QUICKSTART_DIR: state,
      BERTH_QS_NODE: NODE,
      BERTH_QS_IMAGES: 'busybox',
      BERTH_QS_SKIP_INSTALL: '1',
      BERTH_QS_WORKLOAD_WAIT_SECONDS: '60',
      // The berth command's link goes into the state dir, not /usr/local/bin.
      BERTH_QS_LINK: join(state, 'bin', 'berth'),
    };
  });

  after(async function () {
    if (state === '') return;
    readPids();
    await quickstart('down', '--purge');
    // Whatever `down` missed (it is the thing under test) is removed here.
    for (const pid of pids.values()) {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    }
    if (existsSync(state)) {
      await cleanupAgentContainers(join(state, 'agent'), join(state, 'runtime'));
      rmSync(state, { recursive: true, force: true });
    }
  });

  it('starts a single-node cluster and applies examples/hello.yaml when nothing is running', async () => {
    const res = await quickstart('up');
    assert.equal(res.code, 0, output(res));
    readPids();
    for (const name of SERVICES) {
      const pid = pids.get(name);
      assert.ok(pid !== undefined && alive(pid), `${name} should be running\n${output(res)}`);
    }
    assert.match(res.stdout, /^workload\/hello created$/m, `hello.yaml should be applied\n${output(res)}`);
    assert.match(res.stderr, /^hello: 1\/1 replicas ready$/m, `hello's replica should run\n${output(res)}`);
    assert.match(res.stdout, /^hello\s+1\/1\s/m, `berth get workloads should list hello ready\n${output(res)}`);
    assert.match(res.stdout, new RegExp(`^${NODE}\\s+Ready`, 'm'), `berth get nodes should show ${NODE} Ready\n${output(res)}`);
    // The berth command it put on PATH is this checkout's and works.
    const link = join(state, 'bin', 'berth');
    assert.equal(readlinkSync(link), join(REPO, 'dist', 'cmd', 'berth.cjs'));
    const viaLink = await tryRun(link, ['--controller', controller, 'get', 'workloads'], { cwd: REPO, env });
    assert.equal(viaLink.code, 0, output(viaLink));
    assert.match(viaLink.stdout, /^hello\s+1\/1\s/m, output(viaLink));
  });

  it('reports what is already running, starts nothing and leaves a changed hello alone when run again', async () => {
    const before = new Map(pids);
    const scaled = await tryRun('node', [join(REPO, 'dist', 'cmd', 'berth.cjs'), '--controller', controller, 'scale', 'hello', '--replicas', '2'], { cwd: REPO, env });
    assert.equal(scaled.code, 0, output(scaled));
    const res = await quickstart('up');
    assert.equal(res.code, 0, output(res));
    for (const name of SERVICES) {
      assert.match(res.stderr, new RegExp(`^${name}: already running \\(pid ${before.get(name)}\\)`, 'm'), output(res));
    }
    assert.match(res.stderr, /^workload hello: already there, left as it is/m, output(res));
    assert.doesNotMatch(res.stdout, /^workload\/hello /m, `hello.yaml should not be applied again\n${output(res)}`);
    assert.match(res.stdout, /^hello\s+\d+\/2\s/m, `hello should keep its 2 replicas\n${output(res)}`);
    readPids();
    assert.deepEqual(pids, before);
  });

  it('shows every service running in status', async () => {
    const res = await quickstart('status');
    assert.equal(res.code, 0, output(res));
    for (const name of SERVICES) assert.match(res.stdout, new RegExp(`^${name}\\s+running \\(pid ${pids.get(name)}\\)`, 'm'), output(res));
  });

  it('stops every process it started and deletes its state when brought down with --purge', async () => {
    const containerPids = containerProcesses(state);
    assert.ok(containerPids.length >= 2, `hello's shim and init should be running, found pids ${containerPids.join(', ')}`);
    for (const pid of containerPids) pids.set(`container process ${pid}`, pid);
    const res = await quickstart('down', '--purge');
    assert.equal(res.code, 0, output(res));
    for (const [name, pid] of pids) assert.equal(alive(pid), false, `${name} (pid ${pid}) should have stopped\n${output(res)}`);
    assert.deepEqual(mountsUnder(state), [], 'nothing should stay mounted under the state dir');
    assert.deepEqual(processesUnder(state), [], 'no process should be left inside the state dir');
    assert.equal(existsSync(state), false, `${state} should be deleted`);
  });
});
