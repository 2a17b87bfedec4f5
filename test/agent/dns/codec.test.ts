import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buildResponse, parseQuery, readName, RCODE_FORMERR, RCODE_NOTIMP, TYPE_A, TYPE_AAAA } from '../../../agent/dns/index.js';
import { decode, encodeName, query } from './wire.js';

function header(id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(qd, 4);
  h.writeUInt16BE(an, 6);
  h.writeUInt16BE(ns, 8);
  h.writeUInt16BE(ar, 10);
  return h;
}

describe('dns codec', () => {
  it('reads a query with its question and EDNS when it is well formed', () => {
    const p = parseQuery(query('Web.Berth', TYPE_AAAA, { id: 77, edns: { size: 4096 } }));
    assert.equal(p.kind, 'query');
    if (p.kind !== 'query') return;
    assert.equal(p.query.id, 77);
    assert.equal(p.query.rd, true);
    assert.deepEqual(p.query.question, { labels: ['Web', 'Berth'], name: 'web.berth', type: TYPE_AAAA, class: 1 });
    assert.deepEqual(p.query.edns, { udpSize: 4096, version: 0 });
  });

  it('drops packets shorter than a header and responses', () => {
    for (let n = 0; n < 12; n++) assert.deepEqual(parseQuery(Buffer.alloc(n)), { kind: 'drop' });
    assert.deepEqual(parseQuery(Buffer.concat([header(1, 0x8000, 1), encodeName('a'), Buffer.alloc(4)])), { kind: 'drop' });
  });

  it('answers FORMERR for every truncation of a valid query', () => {
    const q = query('web.berth', TYPE_A, { edns: { size: 1232 } });
    for (let n = 12; n < q.length; n++) {
      const p = parseQuery(q.subarray(0, n));
      assert.equal(p.kind, 'error', `length ${n}`);
      if (p.kind === 'error') assert.equal(p.rcode, RCODE_FORMERR);
    }
  });

  it('answers FORMERR when question counts, trailing bytes or OPT records are wrong', () => {
    const body = Buffer.concat([encodeName('a'), Buffer.from([0, 1, 0, 1])]);
    for (const h of [header(1, 0, 0), header(1, 0, 2), header(1, 0, 1, 1), header(1, 0, 1, 0, 1), header(1, 0, 1, 0, 0, 200)]) {
      const p = parseQuery(Buffer.concat([h, body]));
      assert.ok(p.kind === 'error' && p.rcode === RCODE_FORMERR, JSON.stringify(p));
    }
    const trailing = parseQuery(Buffer.concat([header(1, 0, 1), body, Buffer.from([1, 2, 3])]));
    assert.ok(trailing.kind === 'error' && trailing.rcode === RCODE_FORMERR);
    const opt = Buffer.from([0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    const twoOpts = parseQuery(Buffer.concat([header(1, 0, 1, 0, 0, 2), body, opt, opt]));
    assert.ok(twoOpts.kind === 'error' && twoOpts.rcode === RCODE_FORMERR);
    const namedOpt = parseQuery(Buffer.concat([header(1, 0, 1, 0, 0, 1), body, encodeName('x'), opt.subarray(1)]));
    assert.ok(namedOpt.kind === 'error' && namedOpt.rcode === RCODE_FORMERR);
  });

  it('answers NOTIMP for opcodes other than QUERY', () => {
    const p = parseQuery(Buffer.concat([header(9, 2 << 11, 1), encodeName('a'), Buffer.from([0, 1, 0, 1])]));
    assert.deepEqual(p, { kind: 'error', id: 9, rcode: RCODE_NOTIMP, rd: false, opcode: 2 });
  });

  it('refuses compression loops, forward pointers and reserved label types', () => {
    const tail = Buffer.from([0, 1, 0, 1]);
    // A pointer to itself, a pointer forward, two pointers to each other.
    const self = Buffer.concat([header(1, 0, 1), Buffer.from([0xc0, 12]), tail]);
    const forward = Buffer.concat([header(1, 0, 1), Buffer.from([0xc0, 20]), tail, Buffer.alloc(8)]);
    const mutual = Buffer.concat([header(1, 0, 1), Buffer.from([1, 0x61, 0xc0, 16, 0xc0, 12]), tail]);
    const ext = Buffer.concat([header(1, 0, 1), Buffer.from([0x41, 0x61, 0]), tail]);
    for (const [what, b] of [['self', self], ['forward', forward], ['mutual', mutual], ['extended label', ext]] as const) {
      const p = parseQuery(b);
      assert.ok(p.kind === 'error' && p.rcode === RCODE_FORMERR, `${what}: ${JSON.stringify(p)}`);
    }
    // A chain of backward pointers is bounded.
    const chain = [Buffer.from([1, 0x61, 0])];
    for (let i = 0; i < 40; i++) chain.push(Buffer.from([0xc0, 12 + (i === 0 ? 0 : 3 + (i - 1) * 2)]));
    const buf = Buffer.concat([header(1, 0, 0), ...chain]);
    assert.throws(() => readName(buf, buf.length - 2), /bad compression pointer/);
  });

  it('refuses labels over 63 bytes and names over 255 bytes', () => {
    const long = Buffer.concat([header(1, 0, 1), Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0, 0, 1, 0, 1])]);
    assert.ok(parseQuery(long).kind === 'error');
    const name = Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.');
    const big = Buffer.concat([header(1, 0, 1), encodeName(name), Buffer.from([0, 1, 0, 1])]);
    const p = parseQuery(big);
    assert.ok(p.kind === 'error' && p.rcode === RCODE_FORMERR);
    const ok = parseQuery(query(Array.from({ length: 4 }, () => 'a'.repeat(62)).join('.')));
    assert.equal(ok.kind, 'query');
  });

  it('never throws on random packets', () => {
    for (let i = 0; i < 20000; i++) {
      const b = randomBytes(1 + (i % 80));
      if (i % 2 === 0 && b.length > 3) b[2] = b[2]! & 0x07; // mostly queries
      const p = parseQuery(b);
      assert.ok(['query', 'error', 'drop'].includes(p.kind));
    }
  });

  it('writes an A answer pointing at the question, with TTL and OPT', () => {
    const q = parseQuery(query('web', TYPE_A));
    assert.equal(q.kind, 'query');
    if (q.kind !== 'query') return;
    const r = decode(buildResponse({ id: 5, rcode: 0, rd: true, aa: true, ra: false, question: q.query.question, answers: [{ address: '10.96.0.7', ttl: 5 }], edns: true }));
    assert.deepEqual({ id: r.id, qr: r.qr, aa: r.aa, rcode: r.rcode, qd: r.qd, addresses: r.addresses, ttls: r.ttls, hasOpt: r.hasOpt }, { id: 5, qr: true, aa: true, rcode: 0, qd: 1, addresses: ['10.96.0.7'], ttls: [5], hasOpt: true });
  });
});
