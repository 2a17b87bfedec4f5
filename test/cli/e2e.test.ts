import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { startCluster, type TestCluster } from './cluster.js';

function workload(name: string, opts: { replicas?: number; extra?: string } = {}): string {
  return [
    'apiVersion: berth/v1',
    'kind: Workload',
    'metadata:',
    `  name: ${name}`,
    '  labels:',
    `    app: ${name}`,
    'spec:',
    `  replicas: ${opts.replicas ?? 1}`,
    '  image: busybox:latest',
    ...(opts.extra ? [opts.extra] : []),
    '',
  ].join('\n');
}

interface WorkloadJson {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { replicas?: number; image: string };
  status?: { revision?: number };
}

describe('cli end to end (real etcd, NATS and controller)', () => {
  let cluster: TestCluster;
  let dir = '';

  beforeEach(async () => {
    cluster = await startCluster();
    dir = mkdtempSync(join(tmpdir(), 'berth-test-cli-e2e-'));
  });

  afterEach(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function file(name: string, text: string): string {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  }

  async function listNames(): Promise<string[]> {
    const r = await cluster.cli(['get', 'workloads', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as WorkloadJson[]).map((w) => w.metadata.name);
  }

  it('prints created, then unchanged, then configured when a file is applied twice and then changed', async () => {
    const path = file('web.yaml', workload('web'));
    const first = await cluster.cli(['apply', '-f', path]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, 'workload/web created\n');
    const second = await cluster.cli(['apply', '-f', path]);
    assert.equal(second.stdout, 'workload/web unchanged\n');
    writeFileSync(path, workload('web', { replicas: 3 }));
    const third = await cluster.cli(['apply', '-f', path]);
    assert.equal(third.code, 0, third.stderr);
    assert.equal(third.stdout, 'workload/web configured\n');

    const json = await cluster.cli(['get', 'workload', 'web', '-o', 'json']);
    const w = JSON.parse(json.stdout) as WorkloadJson;
    assert.equal(w.metadata.name, 'web');
    assert.equal(w.spec.replicas, 3);
    assert.equal(w.status?.revision, 2);
    assert.match(w.spec.image, /^127\.0\.0\.1:5000\/busybox:latest$/);

    const yaml = await cluster.cli(['get', 'workloads', '-o', 'yaml']);
    const list = parseYaml(yaml.stdout) as WorkloadJson[];
    assert.deepEqual(list.map((x) => [x.metadata.name, x.spec.replicas]), [['web', 3]]);

    const table = await cluster.cli(['get', 'workloads']);
    assert.match(table.stdout, /^NAME\s+READY\s+REVISION\s+IMAGE\s+AGE\nweb\s+0\/3\s+2\s+127\.0\.0\.1:5000\/busybox:latest\s+\d+s\n$/);
  });

  it('applies nothing and names the document and field when one field of a file is bad', async () => {
    const path = file('bad.yaml', workload('good') + '---\n' + workload('bad', { extra: '  resources: { memory: 64Mx }' }));
    // Checked by the CLI first, and (with --no-validate) by the controller alone.
    for (const args of [['apply', '-f', path], ['apply', '--no-validate', '-f', path]]) {
      const r = await cluster.cli(args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /^error: .*bad\.yaml: document 2: spec\.resources\.memory: /);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.equal(r.stdout, '');
      assert.deepEqual(await listNames(), []);
    }
  });

  it('changes nothing when --dry-run is given', async () => {
    const path = file('web.yaml', workload('web'));
    const r = await cluster.cli(['apply', '-f', path, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^workload\/web created \(dry run\)\n--- \/dev\/null\n\+\+\+ workload\/web \(after apply\)\n@@ -0,0 \+1,\d+ @@\n\+replicas: /);
    assert.deepEqual(await listNames(), []);
  });

  it('reads the workload file from standard input when given -f -', async () => {
    const r = await cluster.cli(['apply', '-f', '-'], { stdin: workload('from-stdin') });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'workload/from-stdin created\n');
  });

  it('deletes every workload of a file in one call when given delete -f', async () => {
    const path = file('app.yaml', workload('web') + '---\n' + workload('db'));
    assert.equal((await cluster.cli(['apply', '-f', path])).code, 0);
    assert.equal((await cluster.cli(['apply', '-f', file('other.yaml', workload('other'))])).code, 0);
    const r = await cluster.cli(['delete', '-f', path]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'workload/web deleted\nworkload/db deleted\n');
    assert.deepEqual(await listNames(), ['other']);
  });

  it('deletes named workloads and fails whole with "not found" when one name is unknown', async () => {
    assert.equal((await cluster.cli(['apply', '-f', file('a.yaml', workload('a') + '---\n' + workload('b'))])).code, 0);
    const bad = await cluster.cli(['delete', 'workload', 'a', 'nope']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: .*"nope".*not found/);
    assert.deepEqual(await listNames(), ['a', 'b']);
    const ok = await cluster.cli(['delete', 'workload', 'a', 'nope', '--ignore-not-found']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(await listNames(), ['b']);
  });

  it('filters workloads by label when given -l', async () => {
    assert.equal((await cluster.cli(['apply', '-f', file('a.yaml', workload('a') + '---\n' + workload('b'))])).code, 0);
    const r = await cluster.cli(['get', 'workloads', '-l', 'app=b', '-o', 'json']);
    assert.deepEqual((JSON.parse(r.stdout) as WorkloadJson[]).map((w) => w.metadata.name), ['b']);
  });

  it('scales a workload and lists its revisions', async () => {
    assert.equal((await cluster.cli(['apply', '-f', file('web.yaml', workload('web'))])).code, 0);
    const s = await cluster.cli(['scale', 'web', '--replicas', '4']);
    assert.equal(s.code, 0, s.stderr);
    assert.equal(s.stdout, 'workload/web scaled to 4\n');
    const h = await cluster.cli(['rollout', 'history', 'web']);
    assert.equal(h.code, 0, h.stderr);
    const lines = h.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^REVISION\s+CAUSE\s+IMAGE\s+REPLICAS\s+AGE$/);
    assert.match(lines[1] ?? '', /^1\s+\S+\s+\S+\s+1\s/);
    assert.match(lines[2] ?? '', /^2\s+\S+\s+\S+\s+4\s/);
  });

  it('exits 1 with the server\'s message when a workload does not exist', async () => {
    const r = await cluster.cli(['get', 'workload', 'ghost']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: .*"ghost".*not found\n$/);
  });

  it('shows the controller\'s version and that it leads', async () => {
    const r = await cluster.cli(['version', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const v = JSON.parse(r.stdout) as { client: { version: string }; server: { version: string; apiVersion: string; leader: boolean; leaderId: string; controllerId: string } };
    assert.equal(v.server.version, v.client.version);
    assert.equal(v.server.apiVersion, 'berth/v1');
    assert.equal(v.server.leader, true);
    assert.equal(v.server.leaderId, v.server.controllerId);
    const text = await cluster.cli(['version']);
    assert.match(text.stdout, /^Client Version: .*\nClient API Version: berth\/v1\nServer Version: .*\nServer API Version: berth\/v1\nController: .* \(leader\)\nLeader: /);
  });

  it('prints "No nodes found." and exits 0 when no agent registered', async () => {
    const r = await cluster.cli(['get', 'nodes']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, 'No nodes found.\n');
  });

  it('prints the unreachable message and exits 1 once the controller is stopped', async () => {
    await cluster.controller?.stop();
    const r = await cluster.cli(['get', 'workloads']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `error: failed to reach the controller at ${cluster.address}: connection refused\n`);
  });
});
