/**
 * AgentService container verbs against a real agent stack (runtime, overlay
 * snapshots, busybox from the harness registry): hostile requests refused
 * with the field named, and limits set by UpdateContainer kept across an
 * agent restart and the next start.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import type { ContainerDetails, CopyToContainerRequest, CopyToContainerResponse, TarChunk, WaitResult } from '../../../proto/gen/berth/v1/containers.js';
import { ContainerState, type Container } from '../../../proto/gen/berth/v1/types.js';
import { AgentStack, newId } from '../containers/stack.js';
import { Api, collect, runRequest, unary } from '../containers/grpc.js';

function cgroupFile(pid: number, controller: string, file: string): string {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, controllers = '', path = ''] = line.split(':');
    if (controllers.split(',').includes(controller)) return join('/sys/fs/cgroup', controller, path, file);
  }
  throw new Error(`no ${controller} cgroup for pid ${pid}`);
}

async function rejects(p: Promise<unknown>, code: number, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    const e = err as ServiceError;
    assert.equal(e.code, code, e.details);
    assert.match(e.details, message);
    return true;
  });
}

const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;
const FAILED_PRECONDITION = 9;

describe('AgentService container verbs', function () {
  this.timeout(120_000);
  let reg: RegistryWithImages;
  let stack: AgentStack;
  let api: Api;
  let busybox: string;

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    busybox = reg.images['busybox']!.reference;
  });
  after(async () => {
    await reg?.stop();
  });
  beforeEach(async () => {
    stack = await new AgentStack({ node: `n${newId().slice(0, 8)}` }).start();
    api = new Api(stack.api);
  });
  afterEach(async () => {
    await stack.destroy();
  });

  const c = () => stack.api;

  it('refuses hostile requests naming the field, and unknown containers with NOT_FOUND', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['sleep', '600'] }));
    await rejects(unary(c().killContainer.bind(c()), { id: '../../etc', signal: 'KILL' }), INVALID_ARGUMENT, /^id: /);
    await rejects(unary(c().killContainer.bind(c()), { id, signal: 'BOGUS' }), INVALID_ARGUMENT, /^signal: unknown signal "BOGUS"/);
    await rejects(unary(c().killContainer.bind(c()), { id: newId(), signal: 'KILL' }), NOT_FOUND, /not found on this node/);
    await rejects(unary(c().renameContainer.bind(c()), { id, name: '../evil' }), INVALID_ARGUMENT, /^name: expected/);
    await rejects(unary(c().updateContainer.bind(c()), { id, resources: { memoryBytes: 1, cpuMillis: 0, pids: 0 } }), INVALID_ARGUMENT, /^resources\.memory_bytes: expected 0 \(keep\) or at least 4194304/);
    await rejects(unary(c().updateContainer.bind(c()), { id, resources: { memoryBytes: 0, cpuMillis: -5, pids: 0 } }), INVALID_ARGUMENT, /^resources\.cpu_millis/);
    await rejects(unary(c().updateContainer.bind(c()), { id, resources: { memoryBytes: 0, cpuMillis: 0, pids: 0 } }), INVALID_ARGUMENT, /^resources: expected at least one/);
    await rejects(unary(c().containerStats.bind(c()), { ids: ['x/y'] }), INVALID_ARGUMENT, /^ids\[0\]: /);
    await rejects(collect<TarChunk>(c().copyFromContainer({ id, path: 'etc/passwd' })), INVALID_ARGUMENT, /^path: expected an absolute path/);
    await rejects(collect<TarChunk>(c().copyFromContainer({ id, path: '/etc/../../../etc/passwd' })), INVALID_ARGUMENT, /contains "\.\."/);
    const dataFirst = new Promise<CopyToContainerResponse>((resolve, reject) => {
      const s = c().copyToContainer((err, res) => (err ? reject(err) : resolve(res)));
      s.write({ part: { $case: 'data', value: Buffer.from('x') } } satisfies CopyToContainerRequest);
      s.end();
    });
    await rejects(dataFirst, INVALID_ARGUMENT, /^header: expected the header/);
    // Nothing changed: still running, same name, no limits.
    const d = await unary<{ id: string }, ContainerDetails>(c().inspectContainer.bind(c()), { id });
    assert.equal(d.container?.name, `c-${id.slice(0, 8)}`);
    assert.deepEqual(d.limits, { cpuMillis: 0, memoryBytes: 0, pids: 0 });
    const top = await unary<{ id: string }, { processes: { command: string }[] }>(c().topContainer.bind(c()), { id });
    assert.deepEqual(top.processes.map((p) => p.command), ['sleep 600']);
  });

  it('starts a created container (a terminal container waiting for its client)', async () => {
    const id = newId();
    const created = await api.run(runRequest(id, busybox, { command: ['sleep', '600'], tty: true }, { waitForAttach: true }));
    assert.equal(created.status?.state, ContainerState.CONTAINER_STATE_CREATED);
    const started = await unary<{ id: string }, Container>(c().startContainer.bind(c()), { id });
    assert.equal(started.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.ok((started.status?.pid ?? 0) > 0);
    const top = await unary<{ id: string }, { processes: { command: string }[] }>(c().topContainer.bind(c()), { id });
    assert.deepEqual(top.processes.map((p) => p.command), ['sleep 600']);
  });

  it('keeps updated limits across an agent restart and the next start; wait returns the exit', async () => {
    const id = newId();
    const first = await api.run(runRequest(id, busybox, { command: ['sleep', '600'], resources: { memoryBytes: 64 * 1024 * 1024, cpuMillis: 0, pids: 0 } }));
    const updated: Container = await unary(c().updateContainer.bind(c()), { id, resources: { memoryBytes: 96 * 1024 * 1024, cpuMillis: 250, pids: 40 } });
    assert.deepEqual(updated.spec?.resources, { memoryBytes: 96 * 1024 * 1024, cpuMillis: 250, pids: 40 });
    const pid = first.status!.pid;
    assert.equal(readFileSync(cgroupFile(pid, 'memory', 'memory.limit_in_bytes'), 'utf8').trim(), String(96 * 1024 * 1024));
    assert.equal(readFileSync(cgroupFile(pid, 'cpu', 'cpu.cfs_quota_us'), 'utf8').trim(), '25000');

    await stack.restart();
    api = new Api(stack.api);
    const d = await unary<{ id: string }, ContainerDetails>(c().inspectContainer.bind(c()), { id });
    assert.deepEqual(d.limits, { memoryBytes: 96 * 1024 * 1024, cpuMillis: 250, pids: 40 });

    const waiting = unary<{ id: string }, WaitResult>(c().waitContainer.bind(c()), { id });
    await unary(c().killContainer.bind(c()), { id, signal: '9' });
    const res = await waiting;
    assert.equal(res.exitCode, 137);
    assert.equal(res.reason, 'Signaled');
    await rejects(unary(c().killContainer.bind(c()), { id, signal: 'KILL' }), FAILED_PRECONDITION, /not running/);

    const started = await unary<{ id: string }, Container>(c().startContainer.bind(c()), { id });
    assert.equal(started.status?.restartCount, 0, 'a manual start is not counted as a restart');
    const pid2 = started.status!.pid;
    assert.notEqual(pid2, pid);
    assert.equal(readFileSync(cgroupFile(pid2, 'memory', 'memory.limit_in_bytes'), 'utf8').trim(), String(96 * 1024 * 1024));
    assert.equal(readFileSync(cgroupFile(pid2, 'pids', 'pids.max'), 'utf8').trim(), '40');
  });
});
