import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { BERTH_JS, cleanEnv } from './helpers.js';
import { startRegistryWithImages, waitFor } from '../harness/index.js';
import { startCluster, type TestCluster } from './cluster.js';

type Registry = Awaited<ReturnType<typeof startRegistryWithImages>>;

describe('berth pull and berth images', function () {
  this.timeout(120_000);
  let cluster: TestCluster | undefined;
  let registry: Registry | undefined;

  before(async () => {
    registry = await startRegistryWithImages(['busybox']);
    cluster = await startCluster();
    cluster.startAgent('pull-a');
    cluster.startAgent('pull-b');
    await waitFor('both agents Ready', async () => {
      const r = await cluster?.cli(['get', 'nodes']);
      return (r?.stdout.match(/\bReady\b/g) ?? []).length === 2;
    }, 30_000);
  });

  after(async () => {
    await cluster?.stop();
    await registry?.stop();
  });

  it('pulls on every node with a line per layer phase when not on a terminal, then lists the image per node', async () => {
    const ref = registry?.images['busybox']?.reference ?? '';
    const digest = registry?.images['busybox']?.digest ?? '';
    const pull = await cluster?.cli(['pull', ref]);
    assert.equal(pull?.code, 0, pull?.stderr);
    assert.match(pull?.stdout ?? '', /^pull-a: [0-9a-f]{12}: Pull complete$/m);
    assert.match(pull?.stdout ?? '', /^pull-b: [0-9a-f]{12}: Pull complete$/m);
    assert.ok(pull?.stdout.includes(`pull-a: ${ref}: Digest: ${digest}`));
    assert.ok(pull?.stdout.includes(`pull-b: ${ref}: Digest: ${digest}`));

    const again = await cluster?.cli(['pull', ref, '--node', 'pull-a']);
    assert.equal(again?.code, 0, again?.stderr);
    assert.match(again?.stdout ?? '', /^[0-9a-f]{12}: Already exists$/m);

    const table = await cluster?.cli(['images']);
    assert.equal(table?.code, 0, table?.stderr);
    const lines = (table?.stdout ?? '').trim().split('\n');
    assert.match(lines[0] ?? '', /^REPOSITORY\s+TAG\s+DIGEST\s+SIZE\s+CREATED\s+NODE$/);
    const rows = lines.slice(1).filter((l) => l.includes(digest.slice(7, 19)));
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => /busybox\s+latest\s+[0-9a-f]{12}\s+\S+/.test(r)));

    const json = await cluster?.cli(['images', '--node', 'pull-b', '-o', 'json']);
    const parsed = JSON.parse(json?.stdout ?? '[]') as { node: string; digest: string }[];
    assert.deepEqual(parsed.filter((i) => i.digest === digest).map((i) => i.node), ['pull-b']);
  });

  it('exits 1 with the node and the registry\'s reason when an image is missing, and 2 without an image', async () => {
    const host = registry?.registry.host ?? '';
    const r = await cluster?.cli(['pull', `${host}/nothing-here:1`, '--node', 'pull-b']);
    assert.equal(r?.code, 1);
    assert.match(r?.stderr ?? '', /^error: pull-b: failed to pull ".*nothing-here:1": /m);
    const usage = await cluster?.cli(['pull']);
    assert.equal(usage?.code, 2);
    const help = await cluster?.cli(['pull', '--help']);
    assert.equal(help?.code, 0);
    assert.match(help?.stdout ?? '', /Examples:/);
  });

  it('draws one progress bar per node and layer when stdout is a terminal', async () => {
    const ref = registry?.images['busybox']?.reference ?? '';
    // util-linux `script` gives the CLI a pseudo-terminal and copies what it drew.
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BERTH_JS)} pull ${ref}`;
    const out = await new Promise<{ code: number; text: string }>((resolve) => {
      execFile('script', ['-qec', cmd, '/dev/null'], { env: cleanEnv({ BERTH_CONTROLLER: cluster?.address ?? '' }), timeout: 60_000 },
        (err, stdout) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, text: stdout }));
    });
    assert.equal(out.code, 0, out.text);
    assert.match(out.text, /pull-a: [0-9a-f]{12} \[[\u2588\u2591]+\] (Already exists|Pull complete)/);
    assert.match(out.text, /pull-b: [0-9a-f]{12} \[[\u2588\u2591]+\] (Already exists|Pull complete)/);
  });

  it('shows the cluster in berth info: controller, both nodes with agent and cgroup versions, and image counts', async () => {
    const text = await cluster?.cli(['info']);
    assert.equal(text?.code, 0, text?.stderr);
    assert.match(text?.stdout ?? '', /^Controller: 127\.0\.0\.1:\d+, version \d+\.\d+\.\d+, id \S+, leader \S+$/m);
    assert.match(text?.stdout ?? '', /^Nodes: 2 \(Ready 2\)$/m);
    assert.match(text?.stdout ?? '', /^\s+pull-a\s+Ready\s+\d+\.\d+\.\d+\s+linux\/\S+\s+\S+\s+(v1|v2|hybrid)\s/m);
    const json = await cluster?.cli(['info', '-o', 'json']);
    const info = JSON.parse(json?.stdout ?? '{}') as { nodes: { total: number; list: { name: string; cgroupVersion: string }[] }; images: { unique: number; total: number } };
    assert.equal(info.nodes.total, 2);
    assert.deepEqual(info.nodes.list.map((n) => n.name).sort(), ['pull-a', 'pull-b']);
    assert.ok(info.images.unique >= 1 && info.images.total >= 2, JSON.stringify(info.images));
  });
});
