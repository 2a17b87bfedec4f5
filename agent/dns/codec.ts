/**
 * The DNS wire format (RFC 1035, EDNS per RFC 6891), as much of it as the
 * node resolver needs: reading one query and writing answers. Every packet
 * is hostile: reads are bounds-checked, names are limited to 255 bytes and
 * 63-byte labels, compression pointers may only point backwards (so they
 * cannot loop) and at most MAX_POINTERS are followed.
 *
 * Vocabulary
 *   query     a message with QR=0, one question and optionally one OPT record.
 *   question  QNAME (lowercased labels, original spelling kept for the echo),
 *             QTYPE, QCLASS.
 *   edns      the client's OPT record: its UDP payload size and version.
 */

export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;
/** Extended RCODE 16 (upper 8 bits in the OPT record): unsupported EDNS version. */
export const RCODE_BADVERS = 16;

const HEADER_LEN = 12;
const MAX_NAME_LEN = 255;
const MAX_LABEL_LEN = 63;
const MAX_POINTERS = 16;
/** The UDP payload size this server announces and honours at most. */
export const EDNS_UDP_SIZE = 1232;

export interface Question {
  /** Labels as sent (for the echo in the answer). */
  labels: string[];
  /** Lowercased dotted name without the trailing dot ("" for the root). */
  name: string;
  type: number;
  class: number;
}

export interface Query {
  id: number;
  /** Recursion desired. */
  rd: boolean;
  /** Checking disabled (copied to the answer). */
  cd: boolean;
  opcode: number;
  question: Question;
  /** Present when the query carried an OPT record. */
  edns?: { udpSize: number; version: number };
}

/** What a packet turned out to be. */
export type ParseResult =
  | { kind: 'query'; query: Query }
  /** Malformed beyond the header: answer FORMERR (or NOTIMP for other opcodes) with this id. */
  | { kind: 'error'; id: number; rcode: number; rd: boolean; opcode: number }
  /** Not worth an answer (shorter than a header, or a response). */
  | { kind: 'drop' };

class WireError extends Error {}

function u16(buf: Buffer, off: number): number {
  if (off + 2 > buf.length) throw new WireError('truncated');
  return buf.readUInt16BE(off);
}

/** Reads a (possibly compressed) name at `off`; returns its labels and the offset after it in the packet. */
export function readName(buf: Buffer, start: number): { labels: string[]; end: number } {
  const labels: string[] = [];
  let off = start;
  let end = -1;
  let total = 1;
  let pointers = 0;
  for (;;) {
    if (off >= buf.length) throw new WireError('truncated name');
    const len = buf[off]!;
    if (len === 0) {
      if (end < 0) end = off + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (off + 2 > buf.length) throw new WireError('truncated pointer');
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      // Only backwards, and only so often: no loops.
      if (target >= off || ++pointers > MAX_POINTERS) throw new WireError('bad compression pointer');
      if (end < 0) end = off + 2;
      off = target;
      continue;
    }
    if (kind !== 0) throw new WireError('unsupported label type');
    if (len > MAX_LABEL_LEN) throw new WireError('label too long');
    total += len + 1;
    if (total > MAX_NAME_LEN) throw new WireError('name too long');
    if (off + 1 + len > buf.length) throw new WireError('truncated label');
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  return { labels, end };
}

/** Reads one packet as a query. Never throws. */
export function parseQuery(buf: Buffer): ParseResult {
  if (buf.length < HEADER_LEN) return { kind: 'drop' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if ((flags & 0x8000) !== 0) return { kind: 'drop' };
  const opcode = (flags >> 11) & 0xf;
  const rd = (flags & 0x0100) !== 0;
  const cd = (flags & 0x0010) !== 0;
  if (opcode !== 0) return { kind: 'error', id, rcode: RCODE_NOTIMP, rd, opcode };
  const formerr: ParseResult = { kind: 'error', id, rcode: RCODE_FORMERR, rd, opcode };
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qd !== 1 || an !== 0 || ns !== 0 || ar > 8) return formerr;
  try {
    const name = readName(buf, HEADER_LEN);
    let off = name.end;
    const type = u16(buf, off);
    const klass = u16(buf, off + 2);
    off += 4;
    let edns: Query['edns'];
    for (let i = 0; i < ar; i++) {
      const rr = readName(buf, off);
      off = rr.end;
      const rtype = u16(buf, off);
      const rclass = u16(buf, off + 2);
      const ttl = u16(buf, off + 4) * 65536 + u16(buf, off + 6);
      const rdlen = u16(buf, off + 8);
      off += 10;
      if (off + rdlen > buf.length) throw new WireError('truncated rdata');
      off += rdlen;
      if (rtype === TYPE_OPT) {
        // One OPT, owned by the root.
        if (edns !== undefined || rr.labels.length !== 0) return formerr;
        edns = { udpSize: Math.max(512, rclass), version: (ttl >>> 16) & 0xff };
      }
    }
    if (off !== buf.length) return formerr;
    const question: Question = { labels: name.labels, name: name.labels.join('.').toLowerCase(), type, class: klass };
    return { kind: 'query', query: { id, rd, cd, opcode, question, ...(edns ? { edns } : {}) } };
  } catch (err) {
    if (err instanceof WireError) return formerr;
    throw err;
  }
}

function writeName(labels: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export interface Answer {
  /** IPv4 address of an A record. */
  address: string;
  ttl: number;
}

export interface ResponseOptions {
  id: number;
  rcode: number;
  rd: boolean;
  cd?: boolean;
  /** Authoritative (names of the cluster). */
  aa: boolean;
  /** Recursion available (the server forwards). */
  ra: boolean;
  opcode?: number;
  question?: Question;
  answers?: Answer[];
  /** Add an OPT record (the query had one). */
  edns?: boolean;
}

function ipv4Bytes(address: string): Buffer {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`expected an IPv4 address, got "${address}"`);
  return Buffer.from(parts);
}

/** Writes a response. */
export function buildResponse(o: ResponseOptions): Buffer {
  const header = Buffer.alloc(HEADER_LEN);
  header.writeUInt16BE(o.id, 0);
  const rcodeLow = o.rcode & 0xf;
  const flags = 0x8000 | ((o.opcode ?? 0) << 11) | (o.aa ? 0x0400 : 0) | (o.rd ? 0x0100 : 0) | (o.ra ? 0x0080 : 0) | (o.cd ? 0x0010 : 0) | rcodeLow;
  header.writeUInt16BE(flags, 2);
  const answers = o.answers ?? [];
  header.writeUInt16BE(o.question ? 1 : 0, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(o.edns ? 1 : 0, 10);
  const parts: Buffer[] = [header];
  if (o.question) {
    const q = Buffer.alloc(4);
    q.writeUInt16BE(o.question.type, 0);
    q.writeUInt16BE(o.question.class, 2);
    parts.push(writeName(o.question.labels), q);
  }
  for (const a of answers) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc000 | HEADER_LEN, 0); // the question's name
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(a.ttl, 6);
    rr.writeUInt16BE(4, 10);
    ipv4Bytes(a.address).copy(rr, 12);
    parts.push(rr);
  }
  if (o.edns) {
    const opt = Buffer.alloc(11);
    opt[0] = 0; // root
    opt.writeUInt16BE(TYPE_OPT, 1);
    opt.writeUInt16BE(EDNS_UDP_SIZE, 3);
    opt[5] = o.rcode >> 4; // extended rcode
    opt[6] = 0; // version
    opt.writeUInt16BE(0, 7);
    opt.writeUInt16BE(0, 9);
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

/** The id of a message (0 when too short). */
export function messageId(buf: Buffer): number {
  return buf.length >= 2 ? buf.readUInt16BE(0) : 0;
}
