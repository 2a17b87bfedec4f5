import assert from 'node:assert/strict';
import { connect, type NatsConnection, type Subscription } from 'nats';
import { StatusPublisher, heartbeatSubject } from '../../../agent/status/index.js';
import { Heartbeat } from '../../../proto/gen/berth/v1/status.js';
import { silentLogger } from '../../../lib/index.js';
import { freePort, startProcess, waitFor, type ManagedProcess } from '../../harness/index.js';

/** nats-server on a port we choose, so it can be restarted on the same one. */
async function natsOn(port: number): Promise<ManagedProcess> {
  const monitor = await freePort();
  const proc = startProcess({ name: 'nats', command: 'nats-server', args: () => ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor)] });
  await waitFor('nats-server to accept requests', async () => {
    const res = await fetch(`http://127.0.0.1:${monitor}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  });
  return proc;
}

/** Collects decoded heartbeats of one node. */
function collect(nc: NatsConnection, node: string): { beats: Heartbeat[]; sub: Subscription } {
  const beats: Heartbeat[] = [];
  const sub = nc.subscribe(heartbeatSubject(node));
  void (async () => {
    for await (const m of sub) beats.push(Heartbeat.decode(m.data));
  })();
  return { beats, sub };
}

describe('agent/status StatusPublisher', () => {
  let port = 0;
  let nats: ManagedProcess | undefined;
  let publisher: StatusPublisher | undefined;
  let watcher: NatsConnection | undefined;

  beforeEach(async () => {
    port = await freePort();
    nats = await natsOn(port);
  });

  afterEach(async () => {
    await publisher?.close();
    publisher = undefined;
    await watcher?.close();
    watcher = undefined;
    await nats?.stop();
    nats = undefined;
  });

  it('publishes heartbeats with increasing seq, one instance id and the capacity when started', async () => {
    watcher = await connect({ servers: `nats://127.0.0.1:${port}` });
    const { beats } = collect(watcher, 'node-a');
    await watcher.flush();
    publisher = await StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-a', logger: silentLogger() });
    publisher.startHeartbeats({ intervalMs: 50, capacity: { cpuMillis: 2000, memoryBytes: 1024, pids: 100 }, containers: () => 3 });
    await waitFor('three heartbeats', () => beats.length >= 3, 5000);
    assert.deepEqual(beats.slice(0, 3).map((b) => b.seq), [1, 2, 3]);
    for (const b of beats) {
      assert.equal(b.node, 'node-a');
      assert.equal(b.instance, publisher.instance);
      assert.match(b.instance, /^[0-9a-f]{16}$/);
      assert.equal(b.containers, 3);
      assert.deepEqual(b.capacity, { cpuMillis: 2000, memoryBytes: 1024, pids: 100 });
      assert.ok(Math.abs(b.unixMs - Date.now()) < 10_000);
    }
  });

  it('uses a new instance id per publisher so a restart is visible', async () => {
    const a = await StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-a', logger: silentLogger() });
    const b = await StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-a', logger: silentLogger() });
    try {
      assert.notEqual(a.instance, b.instance);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('publishes nothing more after close()', async () => {
    watcher = await connect({ servers: `nats://127.0.0.1:${port}` });
    const { beats } = collect(watcher, 'node-b');
    await watcher.flush();
    publisher = await StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-b', logger: silentLogger() });
    publisher.startHeartbeats({ intervalMs: 30 });
    await waitFor('a heartbeat', () => beats.length >= 2, 5000);
    await publisher.close();
    await watcher.flush();
    const count = beats.length;
    await new Promise((r) => setTimeout(r, 200));
    await watcher.flush();
    assert.equal(beats.length, count);
    assert.equal(beats[beats.length - 1]?.seq, publisher.seq);
  });

  it('waits for NATS when it is down at start and connects once it is up', async () => {
    await nats?.stop();
    const pending = StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-c', logger: silentLogger(), initialDelayMs: 50, maxDelayMs: 200 });
    await new Promise((r) => setTimeout(r, 300));
    nats = await natsOn(port);
    publisher = await pending;
    watcher = await connect({ servers: `nats://127.0.0.1:${port}` });
    const { beats } = collect(watcher, 'node-c');
    await watcher.flush();
    publisher.startHeartbeats({ intervalMs: 30 });
    await waitFor('a heartbeat', () => beats.length >= 1, 5000);
  });

  it('stops retrying the first connection when the signal aborts', async () => {
    await nats?.stop();
    const ac = new AbortController();
    const pending = StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-d', logger: silentLogger(), signal: ac.signal, initialDelayMs: 50 });
    setTimeout(() => ac.abort(), 200);
    await assert.rejects(pending, /cancelled/);
  });

  it('resumes heartbeats with the same instance after NATS restarts', async () => {
    publisher = await StatusPublisher.connect({ servers: [`nats://127.0.0.1:${port}`], node: 'node-e', logger: silentLogger() });
    publisher.startHeartbeats({ intervalMs: 50 });
    await waitFor('a few heartbeats', () => (publisher?.seq ?? 0) >= 2, 5000);
    await nats?.stop();
    nats = await natsOn(port);
    watcher = await connect({ servers: `nats://127.0.0.1:${port}` });
    const { beats } = collect(watcher, 'node-e');
    await watcher.flush();
    await waitFor('heartbeats after the restart', () => beats.length >= 2, 10_000);
    assert.equal(beats[0]?.instance, publisher.instance);
    assert.ok((beats[1]?.seq ?? 0) > (beats[0]?.seq ?? 0));
  });
});
