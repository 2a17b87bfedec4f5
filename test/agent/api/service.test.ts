/**
 * AgentService against the real stack: a registry with busybox, real
 * containers, the gRPC server on port 0 called with the generated client.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import { AgentStack, eventually, newId } from '../containers/stack.js';
import { Api, runRequest } from '../containers/grpc.js';

function grpcCode(err: unknown): number | undefined {
  return (err as { code?: number }).code;
}

describe('AgentService', function () {
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
    stack = await new AgentStack().start();
    api = new Api(stack.api);
  });
  afterEach(async () => {
    await stack.destroy();
  });

  it('runs busybox echo to exit 0 and Logs returns its output when the image is not on the node yet', async () => {
    const id = newId();
    const c = await api.run(runRequest(id, busybox, { command: ['echo', 'hello'] }));
    assert.equal(c.id, id);
    assert.equal(c.node, stack.node);
    const done = await eventually('the exit', async () => {
      const x = await api.get(id);
      return x?.status?.state === ContainerState.CONTAINER_STATE_EXITED ? x : undefined;
    });
    assert.equal(done.status?.exitCode, 0);
    assert.equal(done.status?.reason, 'Completed');
    assert.equal(await api.logText(id), 'hello\n');
    const lines = await api.logs(id);
    assert.equal(lines[0]?.stream, 'stdout');
  });

  it('merges the image config with the spec like Docker: env, working dir, entrypoint', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { entrypoint: ['sh', '-c'], command: ['echo "$GREETING $PATH $(pwd)"'], env: { GREETING: 'hi' }, workingDir: '/tmp' }));
    await eventually('the exit', async () => ((await api.get(id))?.status?.state === ContainerState.CONTAINER_STATE_EXITED ? true : undefined));
    assert.equal(await api.logText(id), 'hi /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /tmp\n');
  });

  it('returns the same container when RunContainer is retried and refuses another spec under the same id', async () => {
    const id = newId();
    const req = runRequest(id, busybox, { command: ['sleep', '30'] });
    const a = await api.run(req);
    const b = await api.run(req);
    assert.equal(b.id, a.id);
    assert.equal(b.createdUnixMs, a.createdUnixMs);
    assert.equal((await api.list()).length, 1);
    await assert.rejects(api.run(runRequest(id, busybox, { command: ['sleep', '31'] })), (err) => grpcCode(err) === status.ALREADY_EXISTS);
  });

  it('rejects hostile requests with INVALID_ARGUMENT naming the field and creates nothing', async () => {
    const cases: [ReturnType<typeof runRequest>, RegExp][] = [
      [runRequest('../../etc', busybox), /^id: /m],
      [runRequest(newId(), ''), /spec\.image/],
      [runRequest(newId(), 'UPPER/Case::x'), /spec\.image/],
      [runRequest(newId(), busybox, { env: { 'A=B': 'x' } }), /spec\.env/],
      [runRequest(newId(), busybox, { workingDir: 'relative' }), /spec\.working_dir/],
      [runRequest(newId(), busybox, { restart: { policy: 'sometimes', backoffCapSeconds: 0 } }), /spec\.restart\.policy/],
      [runRequest(newId(), busybox, { mounts: [{ type: 'bind', source: '/', destination: '/host', readOnly: false }] }), /spec\.mounts/],
      [runRequest(newId(), busybox, { command: ['echo', 'a\0b'] }), /spec\.command\[1\]/],
      [runRequest(newId(), busybox, { health: { exec: [], intervalSeconds: 1, timeoutSeconds: 1, failureThreshold: 1, startPeriodSeconds: 0 } }), /spec\.health: expected exactly one/],
    ];
    for (const [req, re] of cases) {
      await assert.rejects(api.run(req), (err) => {
        assert.equal(grpcCode(err), status.INVALID_ARGUMENT, String(err));
        assert.match((err as { details: string }).details, re);
        return true;
      });
    }
    await assert.rejects(api.stop('x/y', 1), (err) => grpcCode(err) === status.INVALID_ARGUMENT);
    await assert.rejects(api.stop(newId(), 1), (err) => grpcCode(err) === status.NOT_FOUND);
    await assert.rejects(api.logs('..'), (err) => grpcCode(err) === status.INVALID_ARGUMENT);
    assert.deepEqual(await api.list(), []);
    assert.deepEqual(await stack.runtime.list(), []);
  });

  it('fails RunContainer with the pull error and leaves nothing when the image does not exist', async () => {
    const id = newId();
    await assert.rejects(api.run(runRequest(id, `${reg.registry.host}/nope:latest`)), (err) => {
      assert.notEqual(grpcCode(err), status.OK);
      assert.match((err as { details: string }).details, /nope/);
      return true;
    });
    assert.deepEqual(await api.list(), []);
    assert.equal(existsSync(join(stack.root, 'containers', id)), false);
  });

  it('stops a container that handles SIGTERM with its exit code 143', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['sh', '-c', 'trap "exit 143" TERM; echo up; while true; do sleep 0.1; done'] }));
    await eventually('output', async () => ((await api.logText(id)).includes('up') ? true : undefined));
    const c = await api.stop(id, 10);
    assert.equal(c.status?.state, ContainerState.CONTAINER_STATE_EXITED);
    assert.equal(c.status?.exitCode, 143);
  });

  it('kills a container that ignores SIGTERM after the grace period (exit 137)', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['sleep', '1000'] }));
    const c = await api.stop(id, 1);
    assert.equal(c.status?.state, ContainerState.CONTAINER_STATE_EXITED);
    assert.equal(c.status?.exitCode, 137);
    assert.equal(c.status?.reason, 'Signaled');
  });

  it('removes a running container only with force and leaves no mount, upper dir, cgroup or state', async () => {
    const id = newId();
    const c = await api.run(runRequest(id, busybox, { command: ['sleep', '1000'] }));
    const pid = c.status!.pid;
    assert.ok(pid > 0);
    const cgroupLines = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    await assert.rejects(api.remove(id, false), (err) => grpcCode(err) === status.FAILED_PRECONDITION);
    await api.remove(id, true);
    assert.deepEqual(await api.list(), []);
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    assert.ok(!mounts.includes(id), 'the rootfs is still mounted');
    assert.equal(existsSync(join(stack.root, 'snapshots', 'containers', id)), false, 'the snapshot (upper dir) is left');
    assert.equal(existsSync(join(stack.root, 'containers', id)), false, 'the record is left');
    assert.deepEqual(await stack.runtime.list(), []);
    const memLine = cgroupLines.split('\n').find((l) => /:memory:/.test(l));
    assert.ok(memLine, cgroupLines);
    assert.equal(existsSync(join('/sys/fs/cgroup/memory', memLine.split(':')[2]!)), false, 'the cgroup is left');
    await assert.rejects(api.remove(id, true), (err) => grpcCode(err) === status.NOT_FOUND);
  });

  it('streams pull progress ending with one finished message and lists the image', async () => {
    const msgs = await api.pull(busybox);
    const last = msgs[msgs.length - 1];
    assert.ok(last?.finished);
    assert.equal(last.error, '');
    assert.equal(last.digest, reg.images['busybox']!.digest);
    assert.equal(msgs.filter((m) => m.finished).length, 1);
    const images = (await new Promise<{ images: { reference: string; digest: string; node: string }[] }>((resolve, reject) => {
      stack.api.listImages({}, (err, res) => (err ? reject(err) : resolve(res)));
    })).images;
    assert.deepEqual(images.map((i) => [i.reference, i.digest, i.node]), [[busybox, last.digest, stack.node]]);
    const bad = await api.pull(`${reg.registry.host}/missing:1`);
    assert.equal(bad.length >= 1 && bad[bad.length - 1]!.finished, true);
    assert.match(bad[bad.length - 1]!.error, /missing/);
    await assert.rejects(api.pull('Bad Ref'), (err) => grpcCode(err) === status.INVALID_ARGUMENT);
  });

  it('follows logs until the container exits and honours tail', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done'] }));
    const followed = await api.logText(id, { follow: true });
    assert.equal(followed, 'line1\nline2\nline3\nline4\nline5\n');
    assert.equal(await api.logText(id, { tail: 2 }), 'line4\nline5\n');
  });

  it('removes an auto_remove container once it exited, rootfs and all', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['true'], autoRemove: true }));
    await eventually('the removal', async () => ((await api.list()).length === 0 ? true : undefined));
    assert.equal(existsSync(join(stack.root, 'snapshots', 'containers', id)), false);
    assert.deepEqual(await stack.runtime.list(), []);
  });
});
