/**
 * DnsResolver over real sockets on loopback: a StaticDirectory stands in for
 * the cluster's services and a small UDP/TCP server on 127.0.0.1 plays the
 * node's upstream resolver.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { DnsResolver, PollingDirectory, StaticDirectory, parseResolvConf, parseUpstreamList, type ServiceDirectory, type Upstream } from '../../../agent/dns/index.js';
import { silentLogger } from '../../../lib/index.js';
import { decode, query } from './wire.js';

function udpAsk(port: number, packet: Buffer, timeoutMs = 3000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => { s.close(); resolve(undefined); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(m); });
    s.send(packet, port, '127.0.0.1');
  });
}

function tcpAsk(port: number, packets: Buffer[]): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port });
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    c.on('error', reject);
    c.on('close', () => reject(new Error('connection closed before all answers')));
    c.on('connect', () => {
      for (const p of packets) {
        const h = Buffer.alloc(2);
        h.writeUInt16BE(p.length);
        c.write(Buffer.concat([h, p]));
      }
    });
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === packets.length) { c.end(); resolve(out); }
    });
  });
}

/** An upstream that answers every A query with 192.0.2.1 (and counts queries). */
async function fakeUpstream(): Promise<{ upstream: Upstream; count: () => number; close(): void }> {
  const s = dgram.createSocket('udp4');
  let n = 0;
  s.on('message', (m, r) => {
    n++;
    const reply = Buffer.concat([m, Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1])]);
    reply[2] = 0x81;
    reply[3] = 0x80;
    reply.writeUInt16BE(1, 6);
    s.send(reply, r.port, r.address);
  });
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  return { upstream: { host: '127.0.0.1', port: s.address().port }, count: () => n, close: () => s.close() };
}

describe('DnsResolver', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function serve(upstreams: Upstream[], directory: ServiceDirectory = new StaticDirectory([{ name: 'web', address: '10.96.0.10' }, { name: 'db', address: '10.96.0.11' }]), clients?: string): Promise<number> {
    const resolver = new DnsResolver({ directory, upstreams, logger: silentLogger(), forwardTimeoutMs: 500, ...(clients ? { clients } : {}) });
    cleanups.push(() => resolver.close());
    // A free port for both transports: UDP picks one, TCP takes the same (another when that one is taken).
    for (let attempt = 0; ; attempt++) {
      const udp = dgram.createSocket('udp4');
      await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
      const port = udp.address().port;
      const tcp = net.createServer();
      try {
        await new Promise<void>((res, rej) => { tcp.once('error', rej); tcp.listen(port, '127.0.0.1', () => res()); });
      } catch (err) {
        udp.close();
        if (attempt < 20) continue;
        throw err;
      }
      resolver.serve(udp, tcp);
      return port;
    }
  }

  it('answers NAME and NAME.berth with the service address over UDP', async () => {
    const port = await serve([]);
    for (const name of ['web', 'web.berth', 'WEB.Berth.']) {
      const r = decode((await udpAsk(port, query(name, 1, { id: 4321 })))!);
      assert.deepEqual({ id: r.id, rcode: r.rcode, aa: r.aa, addresses: r.addresses, ttls: r.ttls }, { id: 4321, rcode: 0, aa: true, addresses: ['10.96.0.10'], ttls: [5] }, name);
    }
  });

  it('gives an empty NOERROR for AAAA of a known name and NXDOMAIN for an unknown NAME.berth', async () => {
    const port = await serve([]);
    const aaaa = decode((await udpAsk(port, query('db.berth', 28)))!);
    assert.deepEqual([aaaa.rcode, aaaa.addresses], [0, []]);
    for (const name of ['nope.berth', 'a.web.berth']) {
      const nx = decode((await udpAsk(port, query(name)))!);
      assert.deepEqual([nx.rcode, nx.aa, nx.addresses], [3, true, []], name);
    }
  });

  it('refuses other names when the node has no resolvers', async () => {
    const port = await serve([]);
    const r = decode((await udpAsk(port, query('example.com')))!);
    assert.equal(r.rcode, 5);
    assert.deepEqual(r.addresses, []);
    const single = decode((await udpAsk(port, query('nope')))!);
    assert.equal(single.rcode, 5);
  });

  it('forwards other names to the upstream and relays its answer', async () => {
    const up = await fakeUpstream();
    cleanups.push(() => { up.close(); });
    const port = await serve([up.upstream]);
    const r = decode((await udpAsk(port, query('example.com', 1, { id: 99 })))!);
    assert.deepEqual([r.id, r.rcode, r.addresses], [99, 0, ['192.0.2.1']]);
    assert.equal(up.count(), 1);
    // Cluster names never reach the upstream.
    await udpAsk(port, query('web'));
    await udpAsk(port, query('nope.berth'));
    assert.equal(up.count(), 1);
  });

  it('answers SERVFAIL when the upstream does not answer', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((res) => silent.bind(0, '127.0.0.1', () => res()));
    cleanups.push(() => { silent.close(); });
    const port = await serve([{ host: '127.0.0.1', port: silent.address().port }]);
    const r = decode((await udpAsk(port, query('example.com')))!);
    assert.equal(r.rcode, 2);
  });

  it('answers several queries on one TCP connection in order', async () => {
    const port = await serve([]);
    const [a, b, c] = await tcpAsk(port, [query('web', 1, { id: 1 }), query('db.berth', 1, { id: 2 }), query('nope.berth', 1, { id: 3 })]);
    assert.deepEqual([decode(a!).id, decode(a!).addresses], [1, ['10.96.0.10']]);
    assert.deepEqual([decode(b!).id, decode(b!).addresses], [2, ['10.96.0.11']]);
    assert.deepEqual([decode(c!).id, decode(c!).rcode], [3, 3]);
  });

  it('answers EDNS queries with an OPT record and BADVERS for unknown versions', async () => {
    const port = await serve([]);
    const r = decode((await udpAsk(port, query('web', 1, { edns: { size: 4096 } })))!);
    assert.deepEqual([r.hasOpt, r.addresses], [true, ['10.96.0.10']]);
    const bad = decode((await udpAsk(port, query('web', 1, { edns: { size: 4096, version: 1 } })))!);
    assert.deepEqual([bad.hasOpt, bad.extRcode, bad.rcode, bad.addresses], [true, 1, 0, []]);
  });

  it('survives hostile packets and keeps answering', async () => {
    const port = await serve([]);
    const loop = Buffer.concat([query('x').subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
    const formerr = decode((await udpAsk(port, loop))!);
    assert.equal(formerr.rcode, 1);
    // Too short and responses get nothing.
    assert.equal(await udpAsk(port, Buffer.from([1, 2, 3]), 300), undefined);
    const response = query('web');
    response[2] = 0x81;
    assert.equal(await udpAsk(port, response, 300), undefined);
    // A TCP client announcing more than it sends, then going away.
    await new Promise<void>((res) => {
      const c = net.connect({ host: '127.0.0.1', port }, () => { c.end(Buffer.from([0xff, 0xff, 1, 2])); });
      c.on('close', () => res());
      c.on('error', () => res());
    });
    const ok = decode((await udpAsk(port, query('web')))!);
    assert.deepEqual(ok.addresses, ['10.96.0.10']);
  });

  it('resolves a service the directory learns on its next poll', async () => {
    let services = [{ name: 'web', address: '10.96.0.10' }];
    const dir = new PollingDirectory({ source: { list: async () => services }, logger: silentLogger(), intervalMs: 50 });
    const ac = new AbortController();
    const running = dir.run(ac.signal);
    cleanups.push(async () => { ac.abort(); await running; });
    const port = await serve([], dir);
    services = [...services, { name: 'api', address: '10.96.0.12' }, { name: 'Bad Name', address: '10.96.0.13' }, { name: 'v6', address: '::1' }];
    // Within 2 s (the bound for a new service).
    const deadline = Date.now() + 2000;
    let got: string[] = [];
    while (Date.now() < deadline) {
      got = decode((await udpAsk(port, query('api.berth')))!).addresses;
      if (got.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(got, ['10.96.0.12']);
    assert.equal(decode((await udpAsk(port, query('v6.berth')))!).rcode, 3);
  });

  it('disconnects a TCP client that piles up unanswered queries', async () => {
    // Forwarded queries to an upstream that never answers stay pending.
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((res) => silent.bind(0, '127.0.0.1', () => res()));
    cleanups.push(() => { silent.close(); });
    const port = await serve([{ host: '127.0.0.1', port: silent.address().port }]);
    await assert.rejects(tcpAsk(port, Array.from({ length: 40 }, (_, i) => query('example.com', 1, { id: i }))), /closed/);
    assert.deepEqual(decode((await udpAsk(port, query('web')))!).addresses, ['10.96.0.10']);
  });

  it('ignores clients outside its client range', async () => {
    const port = await serve([], undefined, '10.244.0.0/16');
    assert.equal(await udpAsk(port, query('web'), 300), undefined);
    await assert.rejects(tcpAsk(port, [query('web')]));
    const open = await serve([], undefined, '127.0.0.0/8');
    assert.deepEqual(decode((await udpAsk(open, query('web')))!).addresses, ['10.96.0.10']);
  });

  it('reads an upstream setting and names the setting when it is wrong', () => {
    assert.deepEqual(parseUpstreamList('none', '--dns-upstream'), []);
    assert.deepEqual(parseUpstreamList('10.0.0.2, 10.0.0.3', '--dns-upstream'), [{ host: '10.0.0.2', port: 53 }, { host: '10.0.0.3', port: 53 }]);
    assert.throws(() => parseUpstreamList('10.0.0.2,dns.example', '--dns-upstream'), /--dns-upstream: expected "none" or IP addresses separated by commas; "dns\.example" is not an IP address/);
    assert.throws(() => parseUpstreamList(' , ', '--dns-upstream'), /--dns-upstream: expected "none" or IP addresses/);
  });

  it('reads nameservers from resolv.conf text', () => {
    assert.deepEqual(parseResolvConf('# x\nnameserver 10.0.0.53\nnameserver bogus\nsearch a\nnameserver ::1\n'), [{ host: '10.0.0.53', port: 53 }, { host: '::1', port: 53 }]);
  });
});
