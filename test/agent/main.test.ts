import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { AgentServiceClient } from '../../proto/gen/berth/v1/agent.js';
import { freePort, makeTempDir, startProcess, waitFor, type ManagedProcess } from '../harness/index.js';
import { rmSync } from 'node:fs';

const BERTH_JS = fileURLToPath(new URL('../../cmd/berth.cjs', import.meta.url));

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  return env;
}

function exitCode(p: ManagedProcess): Promise<number | null> {
  if (p.exited()) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve) => p.child.once('exit', (code) => resolve(code)));
}

function logLines(p: ManagedProcess): Record<string, unknown>[] {
  if (!existsSync(p.logFile)) return [];
  return readFileSync(p.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('agent/main (berth agent)', () => {
  const procs: ManagedProcess[] = [];
  let root = '';

  beforeEach(() => {
    root = join(makeTempDir('agent-root'), 'state');
  });

  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.stop()));
    rmSync(join(root, '..'), { recursive: true, force: true });
  });

  function agent(args: string[]): ManagedProcess {
    const p = startProcess({ name: 'agent', command: process.execPath, args: () => [BERTH_JS, 'agent', ...args], env: cleanEnv() });
    procs.push(p);
    return p;
  }

  it('exits 2 with a clear message when a flag is unknown', async () => {
    const p = agent(['--frob']);
    assert.equal(await exitCode(p), 2);
    assert.match(readFileSync(p.logFile, 'utf8'), /unknown option '--frob'/);
  });

  it('exits 2 naming the setting when the node name is not a DNS label', async () => {
    const p = agent(['--node', 'Bad_Name', '--root', root]);
    assert.equal(await exitCode(p), 2);
    assert.match(readFileSync(p.logFile, 'utf8'), /--node: expected a node name of 1-63 lowercase letters/);
  });

  it('exits 2 naming the file and key when the config file has an unknown setting', async () => {
    const cfg = join(root, '..', 'agent.yaml');
    writeFileSync(cfg, 'node: node-1\ncontroler: 127.0.0.1:7070\n');
    const p = agent(['--config', cfg, '--root', root]);
    assert.equal(await exitCode(p), 2);
    assert.match(readFileSync(p.logFile, 'utf8'), /agent\.yaml": unknown setting "controler"; expected one of .*controller/);
  });

  it('takes settings from the config file when no flag or environment variable sets them', async () => {
    const cfg = join(root, '..', 'agent.yaml');
    writeFileSync(cfg, `node: from-file\nroot: ${root}\nlisten: 127.0.0.1:0\ncontroller: 127.0.0.1:${await freePort()}\nnats: nats://127.0.0.1:1\n`);
    const p = agent(['--config', cfg]);
    await waitFor('a registration attempt', () => logLines(p).some((l) => l['message'] === 'registration failed; retrying'), 15_000);
    assert.equal(logLines(p)[0]?.['node'], 'from-file');
    assert.equal(statSync(root).mode & 0o777, 0o700);
    p.child.kill('SIGINT');
    assert.equal(await exitCode(p), 0);
  });

  it('creates its root 0700, answers UNAVAILABLE until it is ready, retries registration and exits 0 on SIGTERM while the controller is down', async () => {
    const controller = `127.0.0.1:${await freePort()}`;
    const p = agent(['--controller', controller, '--nats', 'nats://127.0.0.1:1', '--node', 'node-1', '--root', root, '--listen', '127.0.0.1:0']);
    await waitFor('two failed registration attempts', () => logLines(p).filter((l) => l['message'] === 'registration failed; retrying').length >= 2, 15_000);
    const failures = logLines(p).filter((l) => l['message'] === 'registration failed; retrying');
    assert.equal(failures[0]?.['reason'], `failed to reach the controller at ${controller}: connection refused`);
    assert.deepEqual(failures.map((l) => l['attempt']).slice(0, 2), [1, 2]);
    assert.equal(statSync(root).mode & 0o777, 0o700);

    const listening = logLines(p).find((l) => l['message'] === 'agent API listening');
    const address = String(listening?.['address']);
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    const client = new AgentServiceClient(address, credentials.createInsecure());
    try {
      const err = await new Promise<ServiceError | null>((resolve) => {
        client.listImages({}, new Metadata(), { deadline: Date.now() + 5000 }, (e) => resolve(e));
      });
      assert.equal(err?.code, grpcStatus.UNAVAILABLE);
      assert.match(err?.details ?? '', /the agent is starting/);
    } finally {
      client.close();
    }

    p.child.kill('SIGTERM');
    assert.equal(await exitCode(p), 0);
    assert.ok(logLines(p).some((l) => l['message'] === 'stopped'));
  });
});
