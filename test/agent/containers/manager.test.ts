/**
 * The container manager on a real node: restart policy with backoff, health
 * checks and re-adoption after an agent restart, observed through the
 * ContainerReports on a real NATS server.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection, type Subscription } from 'nats';
import { startNats, startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import { ContainerReport } from '../../../proto/gen/berth/v1/status.js';
import { ContainerState, PullProgress, type Container } from '../../../proto/gen/berth/v1/types.js';
import { containersSubject, pullSubject } from '../../../agent/status/index.js';
import { AgentStack, eventually, newId } from './stack.js';
import { Api, runRequest } from './grpc.js';

type Service = Awaited<ReturnType<typeof startNats>>;

/** Collects the ContainerReports of one node. */
class Reports {
  readonly all: ContainerReport[] = [];
  private sub!: Subscription;

  static async listen(nc: NatsConnection, node: string): Promise<Reports> {
    const r = new Reports();
    r.sub = nc.subscribe(containersSubject(node));
    void (async () => {
      for await (const m of r.sub) r.all.push(ContainerReport.decode(m.data));
    })();
    await nc.flush();
    return r;
  }

  /** Every state of `id` reported (full and delta), in order. */
  of(id: string): Container[] {
    return this.all.flatMap((r) => r.containers.filter((c) => c.id === id));
  }

  stop(): void {
    this.sub.unsubscribe();
  }
}

describe('ContainerManager', function () {
  this.timeout(120_000);
  let reg: RegistryWithImages;
  let nats: Service;
  let nc: NatsConnection;
  let stack: AgentStack;
  let api: Api;
  let busybox: string;
  let reports: Reports;

  before(async () => {
    [reg, nats] = await Promise.all([startRegistryWithImages(['busybox']), startNats()]);
    busybox = reg.images['busybox']!.reference;
    nc = await connect({ servers: nats.url });
  });
  after(async () => {
    await nc?.close();
    await nats?.stop();
    await reg?.stop();
  });
  beforeEach(async () => {
    const node = `n${newId().slice(0, 8)}`;
    reports = await Reports.listen(nc, node);
    stack = await new AgentStack({ node, nats: nats.url }).start();
    api = new Api(stack.api);
  });
  afterEach(async () => {
    reports.stop();
    await stack.destroy();
  });

  it('restarts a failing container with backoff under on-failure and reports the restart count on NATS', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['sh', '-c', 'echo attempt; exit 3'], restart: { policy: 'on-failure', backoffCapSeconds: 2 } }));
    const restarted = await eventually('two restarts in the reports', () => reports.of(id).find((c) => (c.status?.restartCount ?? 0) >= 2));
    assert.equal(restarted.node, stack.node);
    const exits = reports.of(id).filter((c) => c.status?.state === ContainerState.CONTAINER_STATE_EXITED);
    assert.ok(exits.length >= 2);
    assert.equal(exits[0]?.status?.exitCode, 3);
    assert.equal(exits[0]?.status?.reason, 'Error');
    // 1 s, then 2 s (the cap): the waits are announced in the status message.
    assert.match(exits[0]?.status?.message ?? '', /restarting in 1 s/);
    assert.match(exits[1]?.status?.message ?? '', /restarting in 2 s/);
    // The previous attempt's output stays readable next to the current one.
    assert.match(await api.logText(id), /^attempt\nattempt\n/);
    const full = reports.all.filter((r) => r.full);
    assert.ok(full.length >= 1, 'no full report');
    assert.equal(full[0]?.node, stack.node);
  });

  it('does not restart a container that exited 0 under on-failure, nor one that was stopped under always', async () => {
    const ok = newId();
    await api.run(runRequest(ok, busybox, { command: ['true'], restart: { policy: 'on-failure', backoffCapSeconds: 0 } }));
    const always = newId();
    await api.run(runRequest(always, busybox, { command: ['sleep', '1000'], restart: { policy: 'always', backoffCapSeconds: 0 } }));
    const stopped = await api.stop(always, 1);
    assert.equal(stopped.status?.state, ContainerState.CONTAINER_STATE_EXITED);
    await eventually('the exit of the first', async () => ((await api.get(ok))?.status?.state === ContainerState.CONTAINER_STATE_EXITED ? true : undefined));
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await api.get(ok))?.status?.restartCount, 0);
    assert.equal((await api.get(always))?.status?.restartCount, 0);
    assert.equal((await api.get(always))?.status?.state, ContainerState.CONTAINER_STATE_EXITED);
  });

  it('reports unhealthy after the failure threshold and healthy when the check passes', async () => {
    const bad = newId();
    await api.run(runRequest(bad, busybox, {
      command: ['sleep', '1000'],
      health: { exec: ['sh', '-c', 'exit 1'], intervalSeconds: 1, timeoutSeconds: 2, failureThreshold: 2, startPeriodSeconds: 0 },
    }));
    const good = newId();
    await api.run(runRequest(good, busybox, {
      command: ['sh', '-c', 'touch /tmp/ready; sleep 1000'],
      health: { exec: ['test', '-f', '/tmp/ready'], intervalSeconds: 1, timeoutSeconds: 2, failureThreshold: 2, startPeriodSeconds: 0 },
    }));
    assert.equal((await api.get(bad))?.status?.health, 'starting');
    const unhealthy = await eventually('unhealthy in a report', () => reports.of(bad).find((c) => c.status?.health === 'unhealthy'), 30_000);
    assert.match(unhealthy.status?.message ?? '', /exited with 1/);
    assert.equal(unhealthy.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    await eventually('healthy in a report', () => reports.of(good).find((c) => c.status?.health === 'healthy'), 30_000);
  });

  it('re-adopts a running container after an agent restart and learns an exit that happened while it was down', async () => {
    const survivor = newId();
    const survivorReq = runRequest(survivor, busybox, { command: ['sleep', '1000'], env: { B: '2', A: '1' } });
    const c = await api.run(survivorReq);
    const pid = c.status!.pid;
    const victim = newId();
    const v = await api.run(runRequest(victim, busybox, { command: ['sleep', '1000'] }));
    await stack.restart(async () => {
      // While no agent runs: one container ends (killed from outside).
      process.kill(v.status!.pid, 'SIGKILL');
      await eventually('the exit to be written', () => {
        try {
          return readFileSync(join(stack.runtimeRoot, `${victim}.0`, 'exit.json'), 'utf8') !== '' ? true : undefined;
        } catch {
          return undefined;
        }
      });
    });
    api = new Api(stack.api);
    const s = await api.get(survivor);
    assert.equal(s?.status?.state, ContainerState.CONTAINER_STATE_RUNNING);
    assert.equal(s?.status?.pid, pid);
    process.kill(pid, 0);
    // RunContainer retried by the controller after the restart: the same container, not a second one.
    const retried = await api.run(survivorReq);
    assert.equal(retried.createdUnixMs, c.createdUnixMs);
    assert.equal(retried.status?.pid, pid);
    const gone = await eventually('the exit in a report after the restart', () => reports.of(victim).find((x) => x.status?.state === ContainerState.CONTAINER_STATE_EXITED));
    assert.equal(gone.status?.exitCode, 137);
    assert.equal(gone.status?.reason, 'Signaled');
    // The re-adopted container is controlled as before.
    const stopped = await api.stop(survivor, 1);
    assert.equal(stopped.status?.exitCode, 137);
    await api.remove(survivor);
    await api.remove(victim);
    assert.deepEqual(await api.list(), []);
  });

  it('starts a container under always again from its image when the runtime lost it (host restart)', async () => {
    const id = newId();
    const c = await api.run(runRequest(id, busybox, { command: ['sh', '-c', 'if test -f /tmp/mark; then echo again; else echo fresh; fi; touch /tmp/mark; sleep 1000'], restart: { policy: 'always', backoffCapSeconds: 1 } }));
    await stack.restart(async () => {
      // What a reboot does: the process, the runtime state in /run and the overlay mount are gone.
      await stack.runtime.delete(`${id}.0`, { force: true });
      const snap = (await stack.snapshotter.listContainers()).find((x) => x.id === id);
      assert.ok(snap);
      execFileSync('umount', [snap.rootfs]);
    });
    api = new Api(stack.api);
    const back = await eventually('the container to run again', async () => {
      const x = await api.get(id);
      return x?.status?.state === ContainerState.CONTAINER_STATE_RUNNING && x.status.pid !== c.status?.pid ? x : undefined;
    });
    assert.equal(back.status?.restartCount, 1);
    const lost = reports.of(id).find((x) => x.status?.state === ContainerState.CONTAINER_STATE_EXITED);
    assert.equal(lost?.status?.reason, 'Unknown');
    // A fresh rootfs from the image: the file written by the first run is not there.
    const out = await eventually('output of the new attempt', async () => {
      const t = await api.logText(id);
      return t !== '' ? t : undefined;
    });
    assert.equal(out, 'fresh\n');
  });

  it('reports OOMKilled when the container exceeds its memory limit', async () => {
    const id = newId();
    await api.run(runRequest(id, busybox, { command: ['tail', '/dev/zero'], resources: { cpuMillis: 0, memoryBytes: 16 * 1024 * 1024, pids: 0 } }));
    const oom = await eventually('the OOM kill in a report', () => reports.of(id).find((c) => c.status?.state === ContainerState.CONTAINER_STATE_EXITED), 60_000);
    assert.equal(oom.status?.reason, 'OOMKilled');
    assert.equal(oom.status?.exitCode, 137);
  });

  it('publishes pull progress on NATS for a pull started by RunContainer, ending with the finished message', async () => {
    const sub = nc.subscribe(pullSubject(stack.node));
    const got: PullProgress[] = [];
    void (async () => {
      for await (const m of sub) got.push(PullProgress.decode(m.data));
    })();
    await nc.flush();
    try {
      await api.run(runRequest(newId(), busybox, { command: ['true'] }));
      const last = await eventually('the finished message', () => got.find((p) => p.finished));
      assert.equal(last.digest, reg.images['busybox']!.digest);
      assert.equal(last.node, stack.node);
      assert.equal(got.filter((p) => p.finished).length, 1);
    } finally {
      sub.unsubscribe();
    }
  });
});
