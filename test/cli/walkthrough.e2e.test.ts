/**
 * The README's first tour (issue 6's walkthrough), word for word, on a
 * three-node cluster: real etcd, NATS, registry, one controller (whose
 * default registry is the test registry, so "whalesay" is a short name as in
 * the tour) and three agents on this machine. The `-it` step is driven
 * through a real pty; `rm` is checked on the node's disk.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { startProcess, startRegistryWithImages, tailLog, waitFor, type ManagedProcess, type RegistryWithImages } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';
import { BERTH_JS, cleanEnv } from './helpers.js';
import { berthInPty, type PtySession } from './pty.js';

interface ContainerJson {
  id: string;
  name: string;
  node?: string;
  spec?: { image?: string; command?: string[] };
  status?: { state?: string; exitCode?: number };
}

interface ImageJson {
  repository: string;
  node: string;
}

const NODES = ['node-1', 'node-2', 'node-3'];

/** --root and --runtime-root of an agent process, read from its command line. */
function agentDirs(agent: ManagedProcess): { root: string; runtimeRoot: string } {
  const args = readFileSync(`/proc/${agent.pid}/cmdline`, 'utf8').split('\0');
  const value = (flag: string): string => {
    const i = args.indexOf(flag);
    const v = i >= 0 ? args[i + 1] : undefined;
    if (!v) throw new Error(`agent ${agent.name} has no ${flag}`);
    return v;
  };
  return { root: value('--root'), runtimeRoot: value('--runtime-root') };
}

/** Paths under `dir` (a few levels deep, not inside container root filesystems) whose name starts with `id`. */
function pathsOf(dir: string, id: string): string[] {
  const out = execFileSync('find', [dir, '-maxdepth', '4', '-path', '*/rootfs', '-prune', '-o', '-name', `${id}*`, '-print'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l !== '');
}

describe('the first tour (issue 6 walkthrough) on a three-node cluster', function () {
  this.timeout(300_000);
  let reg: RegistryWithImages | undefined;
  let cluster: TestCluster | undefined;
  let session: PtySession | undefined;
  const agents = new Map<string, ManagedProcess>();

  before(async () => {
    reg = await startRegistryWithImages(['whalesay']);
    const registry = reg.registry.host;
    cluster = await startCluster({ controller: false });
    const c = cluster;
    // As startController does, with the test registry as the default one.
    const controller = startProcess({
      name: 'controller',
      command: process.execPath,
      args: () => [BERTH_JS, 'controller', '--etcd', c.etcd.url, '--nats', c.nats.url, '--listen', c.address, '--default-registry', registry],
      env: cleanEnv(),
    });
    c.controller = controller;
    await waitFor('the controller to listen', () => {
      if (controller.exited()) throw new Error(`controller exited early:\n${tailLog(controller)}`);
      return tailLog(controller, 200).includes(`listening on ${c.address}`);
    }, 20_000);
    for (const n of NODES) agents.set(n, c.startAgent(n));
    await waitFor('three Ready nodes', async () => {
      for (const [n, a] of agents) if (a.exited()) throw new Error(`agent ${n} exited early:\n${tailLog(a)}`);
      const r = await c.cli(['get', 'nodes', '-o', 'json']);
      return r.code === 0 && (r.stdout.match(/NODE_STATE_READY/g) ?? []).length === NODES.length;
    }, 90_000, 500);
  });

  after(async () => {
    session?.kill();
    // Stops agents, controller, NATS and etcd, then removes the agents' containers and roots.
    await cluster?.stop();
    await reg?.stop();
  });

  function berth(...args: string[]): ReturnType<TestCluster['cli']> {
    if (!cluster) throw new Error('no cluster');
    return cluster.cli(args);
  }

  async function psAll(): Promise<ContainerJson[]> {
    const r = await berth('ps', '-a', '--format', 'json');
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ContainerJson[];
  }

  it('runs info, run, ps, ps -a, run, run -it, rm and images as the README shows', async () => {
    // $ berth info
    const info = await berth('info');
    assert.equal(info.code, 0, info.stderr);
    for (const n of NODES) assert.match(info.stdout, new RegExp(`\\b${n}\\b`), info.stdout);

    // $ berth run whalesay cowsay "Hello, berth"
    const cow = await berth('run', 'whalesay', 'cowsay', 'Hello, berth');
    assert.equal(cow.code, 0, cow.stderr);
    assert.match(cow.stdout, /< Hello, berth >/);
    assert.match(cow.stdout, /\(oo\)\\_______/);
    const nodesWithWhalesay = new Set<string>();

    // $ berth ps: nothing running
    const ps = await berth('ps');
    assert.equal(ps.code, 0, ps.stderr);
    assert.deepEqual(ps.stdout.trimEnd().split('\n'), [ps.stdout.trimEnd().split('\n')[0]], `only the header: ${ps.stdout}`);
    assert.match(ps.stdout, /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\s+NODE\s+IP\n$/);

    // $ berth ps -a: the exited container, with a generated name, image, command, status, node
    const cowC = (await psAll()).find((c) => c.spec?.command?.[0] === 'cowsay');
    assert.ok(cowC, 'the cowsay container is listed');
    assert.match(cowC.name, /^[a-z]+-[a-z]+$/, 'a generated adjective-name');
    nodesWithWhalesay.add(cowC.node ?? '');
    const table = await berth('ps', '-a');
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((l) => l.includes(cowC.name));
    assert.ok(row, table.stdout);
    assert.ok(row.startsWith(cowC.id.slice(0, 12)), row);
    assert.match(row, /\/whalesay:latest\s/);
    assert.match(row, /"cowsay Hello, berth"/);
    assert.match(row, /\bExited \(0\) (Less than a second|\d+ seconds?|About a minute|\d+ minutes) ago\b/);
    assert.match(row, new RegExp(`\\b${cowC.name}\\s+${cowC.node}\\s+-$`));

    // $ berth run whalesay date: the current date, from inside the container
    const date = await berth('run', 'whalesay', 'date');
    assert.equal(date.code, 0, date.stderr);
    assert.match(date.stdout, new RegExp(`\\d\\d:\\d\\d:\\d\\d \\w+ ${new Date().getUTCFullYear()}\\n$`));
    const dateC = (await psAll()).find((c) => c.spec?.command?.[0] === 'date');
    nodesWithWhalesay.add(dateC?.node ?? '');

    // $ berth run -it whalesay bash: hostname is the container's name; Ctrl-D leaves with the last status
    if (!cluster) throw new Error('no cluster');
    session = berthInPty(['run', '-it', 'whalesay', 'bash'], { controller: cluster.address });
    let at = await session.expect(/[#$] $/);
    session.type('hostname\r');
    at = await session.expect(/\r\n([a-z]+-[a-z]+(-\d+)?)\r\n/, { from: at });
    const shown = /\r\n([a-z]+-[a-z]+(?:-\d+)?)\r\n/.exec(session.output.slice(0, at))?.[1];
    at = await session.expect(/[#$] $/, { from: at });
    session.type('(exit 3)\r');
    await session.expect(/[#$] $/, { from: at });
    session.type('\x04');
    assert.equal(await session.exited(), 3, session.output);
    const shell = (await psAll()).find((c) => c.spec?.command?.[0] === 'bash');
    assert.ok(shell, 'the shell container is listed');
    assert.equal(shown, shell.name, 'hostname inside is the container name');
    nodesWithWhalesay.add(shell.node ?? '');

    // $ berth rm <generated-name>: gone from ps -a, its upper dir and logs deleted on its node
    const agent = agents.get(cowC.node ?? '');
    assert.ok(agent, `agent of ${cowC.node}`);
    const dirs = agentDirs(agent);
    const before = [...pathsOf(dirs.root, cowC.id), ...pathsOf(dirs.runtimeRoot, cowC.id)];
    assert.ok(before.some((p) => p.endsWith(`/containers/${cowC.id}`) && execFileSync('ls', [p], { encoding: 'utf8' }).includes('upper')), `upper dir before rm: ${before.join(', ')}`);
    assert.ok(before.some((p) => p.endsWith(`/${cowC.id}.0`) && execFileSync('ls', [p], { encoding: 'utf8' }).includes('container.log')), `log before rm: ${before.join(', ')}`);
    const rm = await berth('rm', cowC.name);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(rm.stdout.trim(), cowC.name);
    assert.equal((await psAll()).some((c) => c.id === cowC.id), false, 'gone from ps -a');
    assert.deepEqual([...pathsOf(dirs.root, cowC.id), ...pathsOf(dirs.runtimeRoot, cowC.id)], [], 'nothing of it left on the node');

    // $ berth images: whalesay once per node that has it
    const images = await berth('images', '-o', 'json');
    assert.equal(images.code, 0, images.stderr);
    const whales = (JSON.parse(images.stdout) as ImageJson[]).filter((i) => i.repository.endsWith('/whalesay'));
    assert.deepEqual(whales.map((i) => i.node).sort(), [...nodesWithWhalesay].sort());
    const shownTable = await berth('images');
    assert.equal(shownTable.code, 0, shownTable.stderr);
    assert.equal(shownTable.stdout.split('\n').filter((l) => l.includes('/whalesay')).length, nodesWithWhalesay.size, shownTable.stdout);
  });
});
