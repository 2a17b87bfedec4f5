/** Test helpers: DNS queries written byte by byte, and answers read back. */

export function encodeName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const l of name.split('.').filter(Boolean)) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export function query(name: string, type = 1, opts: { id?: number; edns?: { size: number; version?: number }; klass?: number } = {}): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(opts.id ?? 0x1234, 0);
  h.writeUInt16BE(0x0100, 2); // RD
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(opts.edns ? 1 : 0, 10);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(type, 0);
  q.writeUInt16BE(opts.klass ?? 1, 2);
  const parts = [h, encodeName(name), q];
  if (opts.edns) {
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(41, 1);
    opt.writeUInt16BE(opts.edns.size, 3);
    opt[6] = opts.edns.version ?? 0;
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

export interface Decoded {
  id: number;
  qr: boolean;
  aa: boolean;
  tc: boolean;
  rcode: number;
  qd: number;
  addresses: string[];
  ttls: number[];
  hasOpt: boolean;
  extRcode: number;
}

/** Reads an answer of the shape the resolver writes (and simple upstream ones). */
export function decode(b: Buffer): Decoded {
  const flags = b.readUInt16BE(2);
  const qd = b.readUInt16BE(4);
  const an = b.readUInt16BE(6);
  const ar = b.readUInt16BE(10);
  let off = 12;
  const skipName = (): void => {
    for (;;) {
      const len = b[off]!;
      if (len === 0) { off += 1; return; }
      if ((len & 0xc0) === 0xc0) { off += 2; return; }
      off += 1 + len;
    }
  };
  for (let i = 0; i < qd; i++) { skipName(); off += 4; }
  const addresses: string[] = [];
  const ttls: number[] = [];
  for (let i = 0; i < an; i++) {
    skipName();
    const type = b.readUInt16BE(off);
    const ttl = b.readUInt32BE(off + 4);
    const rdlen = b.readUInt16BE(off + 8);
    off += 10;
    if (type === 1) { addresses.push([...b.subarray(off, off + 4)].join('.')); ttls.push(ttl); }
    off += rdlen;
  }
  let hasOpt = false;
  let extRcode = 0;
  for (let i = 0; i < ar; i++) {
    skipName();
    const type = b.readUInt16BE(off);
    if (type === 41) { hasOpt = true; extRcode = b[off + 4]!; }
    off += 10 + b.readUInt16BE(off + 8);
  }
  return { id: b.readUInt16BE(0), qr: (flags & 0x8000) !== 0, aa: (flags & 0x0400) !== 0, tc: (flags & 0x0200) !== 0, rcode: flags & 0xf, qd, addresses, ttls, hasOpt, extRcode };
}
