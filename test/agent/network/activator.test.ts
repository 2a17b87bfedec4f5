/**
 * Activator (agent/network/activator.ts): hold listeners for scale-to-zero
 * services, with real TCP sockets. The service lists are test input (what
 * ServiceService would answer); the "replica" is a real TCP server; the
 * client is a real TCP connection to the hold listener. The last case runs
 * the same through the namespace helper (agent/sys tcp.ts) inside a
 * namespace host.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Activator, type ActivationSink, type ServiceLookup } from '../../../agent/network/index.js';
import { netnsTcp, type TcpOps } from '../../../agent/sys/index.js';
import { silentLogger } from '../../../lib/index.js';
import type { ListServicesResponse, Service } from '../../../proto/gen/berth/v1/services.js';
import { makeHosts, type TestHosts } from '../../harness/index.js';

const LOOPBACK = '127.0.0.1';

function service(name: string, port: number, endpoints: string[], opts: { scaleToZero?: boolean; protocol?: string } = {}): Service {
  return {
    name,
    virtualIp: '10.96.0.10',
    ports: [{ name: 'http', port, protocol: opts.protocol ?? 'tcp', targetPort: port, published: 0 }],
    endpoints: endpoints.map((address, i) => ({
      containerId: `c${i}`, containerName: `${name}-${i}`, node: 'n1', address, ready: true, state: 'CONTAINER_STATE_RUNNING', health: '',
      draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0,
    })),
    scaleToZero: opts.scaleToZero ?? true,
  };
}

function list(...services: Service[]): ListServicesResponse {
  return { services, serviceCidr: '10.96.0.0/16' };
}

/** A "replica": answers every connection with `greeting` + what it received, then ends. */
async function startReplica(greeting: string, host = LOOPBACK, port = 0): Promise<{ server: net.Server; port: number; received: string[] }> {
  const received: string[] = [];
  const server = net.createServer((s) => {
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\n')) {
        received.push(got);
        s.end(`${greeting}:${got}`);
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
  const addr = server.address();
  return { server, port: typeof addr === 'object' && addr ? addr.port : 0, received };
}

/** Connects, sends `line` at once, and resolves everything read until the server closes (or "" on reset). */
function exchange(port: number, line: string, host = LOOPBACK): { done: Promise<string>; socket: net.Socket } {
  const socket = net.connect({ host, port });
  socket.write(line);
  const done = new Promise<string>((resolve) => {
    let out = '';
    socket.on('data', (d: Buffer) => (out += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(out));
  });
  return { done, socket };
}

function recordingSink(): ActivationSink & { calls: { service: string; held: number }[] } {
  const calls: { service: string; held: number }[] = [];
  return { calls, activate: (service, held) => calls.push({ service, held }) };
}

async function waitUntil(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function holdPort(targets: ReadonlyMap<string, { ports: Readonly<Record<string, number>> }>, name: string, key: string): number {
  const p = targets.get(name)?.ports[key];
  assert.ok(p !== undefined && p > 0, `expected a hold listener for ${name} ${key}, got ${JSON.stringify([...targets])}`);
  return p;
}

function refused(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('Activator', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function activator(opts: { sink?: ActivationSink; lookup?: ServiceLookup; holdTimeoutMs?: number; tcp?: TcpOps; address?: string; maxHeld?: number } = {}): Activator {
    const tcp = opts.tcp ?? netnsTcp();
    const a = new Activator({
      tcp, address: opts.address ?? LOOPBACK, sink: opts.sink ?? recordingSink(), logger: silentLogger(), activityMs: 60_000, pollMs: 20,
      ...(opts.lookup ? { lookup: opts.lookup } : {}), ...(opts.holdTimeoutMs !== undefined ? { holdTimeoutMs: opts.holdTimeoutMs } : {}),
      ...(opts.maxHeld !== undefined ? { maxHeld: opts.maxHeld } : {}),
    });
    cleanups.push(() => {
      a.close();
      tcp.close();
    });
    return a;
  }

  async function replica(greeting: string): Promise<{ port: number; received: string[] }> {
    const r = await startReplica(greeting);
    cleanups.push(() => new Promise((res) => r.server.close(() => res(undefined))));
    return r;
  }

  it('holds a connection, asks for a replica once, and forwards it (with what the client sent meanwhile) when an endpoint becomes ready', async () => {
    const r = await replica('hello');
    const sink = recordingSink();
    const a = activator({ sink });
    const targets = await a.prepare(list(service('web', r.port, [])));
    assert.deepEqual(targets.get('web')?.address, LOOPBACK);
    const port = holdPort(targets, 'web', `${r.port}/tcp`);

    const c = exchange(port, 'GET /\n');
    cleanups.push(() => c.socket.destroy());
    await waitUntil('the connection to be held', () => a.heldCount === 1);
    assert.deepEqual(sink.calls, [{ service: 'web', held: 1 }]);
    assert.equal(r.received.length, 0, 'nothing reaches a replica before it is ready');

    await a.prepare(list(service('web', r.port, [LOOPBACK])));
    assert.equal(await c.done, 'hello:GET /\n');
    assert.deepEqual(r.received, ['GET /\n']);
    assert.equal(a.stats.forwarded, 1);
    assert.equal(a.heldCount, 0);
  });

  it('sees the ready endpoint through the service lookup while connections are held, without a new list', async () => {
    const r = await replica('polled');
    let ready = false;
    let lookups = 0;
    const lookup: ServiceLookup = {
      getService: async (name) => {
        lookups++;
        return service(name, r.port, ready ? [LOOPBACK] : []);
      },
    };
    const a = activator({ lookup });
    const port = holdPort(await a.prepare(list(service('web', r.port, []))), 'web', `${r.port}/tcp`);
    const c = exchange(port, 'ping\n');
    cleanups.push(() => c.socket.destroy());
    await waitUntil('a few lookups', () => lookups >= 2);
    ready = true;
    assert.equal(await c.done, 'polled:ping\n');
  });

  it('shares one activation among several held connections and forwards them all', async () => {
    const r = await replica('many');
    const sink = recordingSink();
    const a = activator({ sink });
    const port = holdPort(await a.prepare(list(service('web', r.port, []))), 'web', `${r.port}/tcp`);
    const clients = [1, 2, 3].map((i) => exchange(port, `c${i}\n`));
    for (const c of clients) cleanups.push(() => c.socket.destroy());
    await waitUntil('three held connections', () => a.heldCount === 3);
    assert.equal(sink.calls.length, 1, `one activation for three connections, got ${JSON.stringify(sink.calls)}`);
    await a.prepare(list(service('web', r.port, [LOOPBACK])));
    assert.deepEqual(await Promise.all(clients.map((c) => c.done)), ['many:c1\n', 'many:c2\n', 'many:c3\n']);
  });

  it('retries the endpoint while its server does not accept yet', async () => {
    // Reserve a port, then free it: the "replica" starts listening on it later.
    const probe = await startReplica('x');
    const port0 = probe.port;
    await new Promise((res) => probe.server.close(() => res(undefined)));
    const a = activator();
    const port = holdPort(await a.prepare(list(service('web', port0, []))), 'web', `${port0}/tcp`);
    const c = exchange(port, 'late\n');
    cleanups.push(() => c.socket.destroy());
    await waitUntil('the connection to be held', () => a.heldCount === 1);
    await a.prepare(list(service('web', port0, [LOOPBACK])));
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(a.stats.forwarded, 0, 'not forwarded while the replica refuses');
    const late = await startReplica('late', LOOPBACK, port0);
    cleanups.push(() => new Promise((res) => late.server.close(() => res(undefined))));
    assert.equal(await c.done, 'late:late\n');
  });

  it('closes a held connection after the hold bound when no replica becomes ready', async () => {
    const a = activator({ holdTimeoutMs: 300 });
    const port = holdPort(await a.prepare(list(service('web', 8080, []))), 'web', '8080/tcp');
    const c = exchange(port, 'anyone?\n');
    assert.equal(await c.done, '', 'closed without an answer');
    assert.equal(a.stats.gaveUp, 1);
    assert.equal(a.heldCount, 0);
  });

  it('closes the listener (and held connections) when the service disappears or stops scaling to zero', async () => {
    const a = activator();
    const t1 = await a.prepare(list(service('web', 8080, []), service('api', 9090, [])));
    const webPort = holdPort(t1, 'web', '8080/tcp');
    const apiPort = holdPort(t1, 'api', '9090/tcp');
    const c = exchange(webPort, 'x\n');
    await waitUntil('the connection to be held', () => a.heldCount === 1);

    const t2 = await a.prepare(list(service('api', 9090, [], { scaleToZero: false })));
    assert.equal(t2.size, 0);
    assert.deepEqual(a.services, []);
    assert.equal(await c.done, '', 'the held connection is closed');
    assert.ok(await refused(webPort), 'the web hold listener is closed');
    assert.ok(await refused(apiPort), 'the api hold listener is closed');
  });

  it('keeps the same listener across lists and holds no udp port', async () => {
    const a = activator();
    const p1 = holdPort(await a.prepare(list(service('web', 8080, []))), 'web', '8080/tcp');
    const p2 = holdPort(await a.prepare(list(service('web', 8080, []))), 'web', '8080/tcp');
    assert.equal(p1, p2);
    const t = await a.prepare(list(service('dns', 53, [], { protocol: 'udp' })));
    assert.equal(t.has('dns'), false, 'udp is not held');
    assert.ok(await refused(p1), 'the web listener went with the service');
  });

  it('serves only connections addressed to the gateway address (what the table DNATs there)', async () => {
    const a = activator();
    const port = holdPort(await a.prepare(list(service('web', 8080, []))), 'web', '8080/tcp');
    // 127.0.0.2 is another local address: the listener is bound on every address, but this is not the gateway.
    const c = exchange(port, 'x\n', '127.0.0.2');
    assert.equal(await c.done, '');
    assert.equal(a.stats.held, 0);
  });

  it('closes new connections at once beyond the held-connection cap, and holds again once there is room', async () => {
    const r = await replica('capped');
    const a = activator({ maxHeld: 2 });
    const port = holdPort(await a.prepare(list(service('web', r.port, []))), 'web', `${r.port}/tcp`);
    const held = [exchange(port, 'a\n'), exchange(port, 'b\n')];
    for (const c of held) cleanups.push(() => c.socket.destroy());
    await waitUntil('two held connections', () => a.heldCount === 2);
    const third = exchange(port, 'c\n');
    assert.equal(await third.done, '', 'the third is closed, not held');
    assert.equal(a.stats.refused, 1);
    await a.prepare(list(service('web', r.port, [LOOPBACK])));
    assert.deepEqual(await Promise.all(held.map((c) => c.done)), ['capped:a\n', 'capped:b\n']);
  });

  it('closes listeners and held connections on close()', async () => {
    const a = activator();
    const port = holdPort(await a.prepare(list(service('web', 8080, []))), 'web', '8080/tcp');
    const c = exchange(port, 'x\n');
    await waitUntil('the connection to be held', () => a.heldCount === 1);
    a.close();
    assert.equal(await c.done, '');
    assert.ok(await refused(port));
    assert.equal((await a.prepare(list(service('web', 8080, [])))).size, 0, 'a closed activator holds nothing');
  });

  describe('in a namespace host (tcp helper)', function () {
    this.timeout(60_000);
    let hosts: TestHosts | undefined;
    afterEach(async () => {
      await hosts?.cleanup();
      hosts = undefined;
    });

    it('listens, holds and forwards inside the node network namespace', async () => {
      hosts = await makeHosts(1);
      const h = hosts.hosts[0]!;
      const tcp = netnsTcp(`/run/netns/${h.netns}`);
      cleanups.push(() => tcp.close());
      // The "replica" listens inside the namespace too (a server made there, served from here).
      const replicaServer = await tcp.listen(h.address, 0);
      const rport = (replicaServer.address() as net.AddressInfo).port;
      replicaServer.on('connection', (s) => {
        s.on('error', () => undefined);
        s.once('data', (d: Buffer) => s.end(`ns:${d.toString()}`));
      });
      cleanups.push(() => new Promise((res) => replicaServer.close(() => res(undefined))));
      const a = activator({ tcp, address: h.address });
      const port = holdPort(await a.prepare(list(service('web', rport, []))), 'web', `${rport}/tcp`);
      // The client connects from inside the namespace as well.
      const client = await tcp.connect(h.address, port);
      cleanups.push(() => client.destroy());
      const answer = new Promise<string>((resolve) => {
        let out = '';
        client.on('data', (d: Buffer) => (out += d.toString()));
        client.on('close', () => resolve(out));
      });
      client.write('hi\n');
      await waitUntil('the connection to be held', () => a.heldCount === 1);
      await a.prepare(list(service('web', rport, [h.address])));
      assert.equal(await answer, 'ns:hi\n');
    });
  });
});
