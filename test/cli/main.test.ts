import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../harness/index.js';
import { berth, cliInProcess, cleanEnv } from './helpers.js';

/** Every verb path, for the --help checks. */
const VERBS = [
  [],
  ['apply'],
  ['get'],
  ['get', 'workloads'],
  ['get', 'nodes'],
  ['delete'],
  ['delete', 'workload'],
  ['scale'],
  ['rollout'],
  ['rollout', 'history'],
  ['rollout', 'status'],
  ['rollout', 'undo'],
  ['rollout', 'restart'],
  ['version'],
];

describe('cli/main', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-test-cli-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  for (const verb of VERBS) {
    it(`prints help with examples and exits 0 when run as "berth ${[...verb, '--help'].join(' ')}"`, async () => {
      const r = await cliInProcess([...verb, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Usage: berth/);
      assert.match(r.stdout, /Examples:\n {2}berth /);
    });
  }

  it('lists every verb and the two server commands in the top-level help', async () => {
    const r = await cliInProcess(['--help']);
    for (const v of ['apply', 'get', 'delete', 'scale', 'rollout', 'version', 'controller', 'agent']) {
      assert.match(r.stdout, new RegExp(`^ {2}${v}\\b`, 'm'), `help lists ${v}`);
    }
  });

  it('exits 2 with a clear message when the verb is unknown', async () => {
    const r = await cliInProcess(['frobnicate']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: unknown command 'frobnicate'/);
  });

  it('exits 2 and suggests the nearest verb when the verb is misspelt', async () => {
    const r = await cliInProcess(['aply', '-f', 'x.yaml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Did you mean apply\?/);
  });

  it('exits 2 with a clear message when a flag is unknown', async () => {
    const r = await cliInProcess(['get', 'nodes', '--colour']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^error: unknown option '--colour'/);
  });

  it('exits 2 when a required flag is missing', async () => {
    const r = await cliInProcess(['apply']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /required option '-f, --filename <file\.\.\.>' not specified/);
  });

  it('exits 2 naming the flag and what was expected when --replicas is not a whole number', async () => {
    const r = await cliInProcess(['scale', 'web', '--replicas', '2.5']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'error: --replicas: expected a whole number from 0 to 10000, got "2.5"\n');
  });

  it('exits 2 when the controller address is not HOST:PORT', async () => {
    const r = await cliInProcess(['--controller', 'nowhere', 'get', 'nodes']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--controller: expected HOST:PORT such as 127\.0\.0\.1:7070, got "nowhere"/);
  });

  it('exits 2 when -o names an unknown format', async () => {
    const r = await cliInProcess(['get', 'workloads', '-o', 'xml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Allowed choices are table, wide, json, yaml/);
  });

  it('exits 1 naming the file when apply is given a file that does not exist', async () => {
    const r = await cliInProcess(['apply', '-f', join(dir, 'missing.yaml')]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `error: failed to read "${join(dir, 'missing.yaml')}": no such file\n`);
  });

  it('exits 1 naming the document when delete -f is given a document without a name', async () => {
    const file = join(dir, 'w.yaml');
    writeFileSync(file, 'apiVersion: berth/v1\nkind: Workload\nmetadata: {}\n');
    const r = await cliInProcess(['delete', '-f', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /w\.yaml: document 1: metadata\.name: expected a workload name/);
  });

  it('rejects a bad workload file locally, naming the document and field, without calling the controller', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web }\nspec: { image: busybox, replicaz: 2 }\n');
    const r = await cliInProcess(['--controller', `127.0.0.1:${await freePort()}`, 'apply', '-f', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: .*bad\.yaml: spec\.replicaz: unknown field "replicaz" \(did you mean "replicas"\?\)/);
    assert.doesNotMatch(r.stderr, /failed to reach/);
  });

  it('checks every file before sending any when given several -f', async () => {
    const good = join(dir, 'good.yaml');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(good, 'apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web }\nspec: { image: busybox }\n');
    writeFileSync(bad, 'apiVersion: berth/v1\nkind: Workload\nmetadata: { name: db }\nspec: { image: busybox, replicas: -1 }\n');
    const r = await cliInProcess(['--controller', `127.0.0.1:${await freePort()}`, 'apply', '-f', good, '-f', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.yaml: spec\.replicas: /);
    assert.doesNotMatch(r.stderr, /failed to reach/);
  });

  describe('when the controller is down', () => {
    let address = '';
    beforeEach(async () => {
      address = `127.0.0.1:${await freePort()}`;
    });

    for (const args of [['get', 'nodes'], ['get', 'workloads'], ['delete', 'workload', 'web'], ['scale', 'web', '--replicas', '2'], ['rollout', 'history', 'web']]) {
      it(`prints that the controller is unreachable and exits 1 for "berth ${args.join(' ')}"`, async () => {
        const r = await cliInProcess(['--controller', address, ...args]);
        assert.equal(r.code, 1);
        assert.equal(r.stderr, `error: failed to reach the controller at ${address}: connection refused\n`);
        assert.equal(r.stdout, '');
      });
    }

    it('reads the controller address from BERTH_CONTROLLER', async () => {
      const r = await cliInProcess(['get', 'nodes'], { env: cleanEnv({ BERTH_CONTROLLER: address }) });
      assert.equal(r.code, 1);
      assert.match(r.stderr, new RegExp(`at ${address.replace(/\./g, '\\.')}: connection refused`));
    });

    it('sends apply input read from standard input and fails only on the connection', async () => {
      const r = await cliInProcess(['--controller', address, 'apply', '-f', '-'], { stdin: 'apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web }\nspec: { image: busybox }\n' });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /connection refused/);
    });

    it('still prints the client version and exits 1 for "berth version"', async () => {
      const r = await cliInProcess(['--controller', address, 'version', '-o', 'json']);
      assert.equal(r.code, 1);
      const v = JSON.parse(r.stdout) as { client: { version: string }; server?: unknown; serverError?: string };
      assert.match(v.client.version, /^\d+\.\d+\.\d+/);
      assert.equal(v.server, undefined);
      assert.match(v.serverError ?? '', /connection refused/);
    });

    it('prints a stack trace only when --debug is given', async () => {
      const plain = await cliInProcess(['--controller', address, 'get', 'nodes']);
      assert.doesNotMatch(plain.stderr, /\n\s+at /);
      const debug = await cliInProcess(['--controller', address, '--debug', 'get', 'nodes']);
      assert.match(debug.stderr, /\n\s+at /);
      assert.match(debug.stderr, /caused by: .*UNAVAILABLE/);
    });
  });

  describe('the built program', () => {
    it('exits 0 for --help and 2 for an unknown verb through cmd/berth.cjs', async () => {
      const help = await berth(['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /Commands:/);
      const bad = await berth(['frobnicate']);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /unknown command 'frobnicate'/);
    });

    it('exits 1 with the unreachable message and no stack through cmd/berth.cjs', async () => {
      const address = `127.0.0.1:${await freePort()}`;
      const r = await berth(['get', 'nodes'], { env: cleanEnv({ BERTH_CONTROLLER: address }) });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `error: failed to reach the controller at ${address}: connection refused\n`);
    });
  });
});
