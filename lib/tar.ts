/**
 * A small tar writer and streaming reader for `berth cp` (file and directory
 * copies between a container and the local machine). Not for image layers
 * (agent/snapshots has its own reader with whiteout and xattr handling).
 *
 * Writer: POSIX ustar headers; names and link targets that do not fit get a
 * pax extended header (`x`) with `path` / `linkpath`; sizes of 8 GiB and
 * more get a pax `size`.
 *
 * Reader: ustar, pax `x` (path, linkpath, size) and `g` (ignored), GNU long
 * names (`L`, `K`). Entries of other types come out as `other` with their
 * type flag, so callers can refuse them. Lifecycle: `push(chunk)` any number
 * of times, then `end()`, which throws when the archive stopped mid-entry.
 * The handler gets `entry(e)`, `data(chunk)` for its bytes, `entryEnd()`.
 */

const BLOCK = 512;
/** Largest pax / GNU long-name payload accepted (hostile archives could claim gigabytes). */
const MAX_META = 1024 * 1024;

export type TarKind = 'file' | 'dir' | 'symlink' | 'other';

export interface TarHeader {
  name: string;
  kind: TarKind;
  /** Raw type flag ('0', '5', '2', ...). */
  typeFlag: string;
  /** Permission bits (07777). */
  mode: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  linkname: string;
}

export class TarError extends Error {
  override name = 'TarError';
}

function octal(buf: Buffer, off: number, len: number, value: number): void {
  const s = Math.floor(value).toString(8).padStart(len - 1, '0');
  buf.write(s.slice(-(len - 1)), off, len - 1, 'ascii');
  buf[off + len - 1] = 0;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

function header(name: string, typeFlag: string, mode: number, size: number, mtime: number, linkname: string): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  octal(b, 100, 8, mode & 0o7777);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, Math.max(0, mtime));
  b.fill(0x20, 148, 156);
  b.write(typeFlag, 156, 1, 'ascii');
  b.write(linkname, 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'ascii');
  b.write('root', 265, 32, 'ascii');
  b.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return b;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** The header block(s) of one entry (a pax header first when needed). */
export function tarHeader(h: Omit<TarHeader, 'kind'> & { kind: Exclude<TarKind, 'other'> }): Buffer {
  const typeFlag = h.kind === 'file' ? '0' : h.kind === 'dir' ? '5' : '2';
  const name = h.kind === 'dir' && !h.name.endsWith('/') ? `${h.name}/` : h.name;
  const size = h.kind === 'file' ? h.size : 0;
  let pax = '';
  if (Buffer.byteLength(name) > 100) pax += paxRecord('path', name);
  if (Buffer.byteLength(h.linkname) > 100) pax += paxRecord('linkpath', h.linkname);
  if (size >= 0o77777777777) pax += paxRecord('size', String(size));
  const main = header(Buffer.byteLength(name) > 100 ? name.slice(0, 99) : name, typeFlag, h.mode, size >= 0o77777777777 ? 0 : size, h.mtime,
    Buffer.byteLength(h.linkname) > 100 ? '' : h.linkname);
  if (pax === '') return main;
  const body = Buffer.from(pax, 'utf8');
  return Buffer.concat([header('PaxHeader', 'x', 0o644, body.length, h.mtime, ''), body, padding(body.length), main]);
}

/** Zero padding after `size` bytes of file data. */
export function tarPadding(size: number): Buffer {
  return padding(size);
}

/** The end-of-archive marker (two zero blocks). */
export function tarTrailer(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

export interface TarStreamHandler {
  entry(h: TarHeader): void;
  data(chunk: Buffer): void;
  entryEnd(): void;
}

function cstring(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

function parseNumber(buf: Buffer, start: number, len: number, what: string): number {
  if (((buf[start] ?? 0) & 0x80) !== 0) {
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + (buf[i] ?? 0);
    if (!Number.isSafeInteger(v)) throw new TarError(`${what} is too large`);
    return v;
  }
  const s = cstring(buf, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`${what}: expected an octal number, got ${JSON.stringify(s)}`);
  return parseInt(s, 8);
}

function parsePax(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    const sp = body.indexOf(0x20, at);
    const len = Number(body.toString('ascii', at, sp));
    if (sp <= at || !Number.isInteger(len) || len <= sp - at || at + len > body.length) throw new TarError('malformed pax header');
    const kv = body.toString('utf8', sp + 1, at + len - 1);
    const eq = kv.indexOf('=');
    if (eq > 0) out.set(kv.slice(0, eq), kv.slice(eq + 1));
    at += len;
  }
  return out;
}

/** Streaming tar reader (see the file comment). */
export class TarStreamReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of the current entry's data still to come (then padding). */
  private remaining = 0;
  private pad = 0;
  private meta: { kind: 'x' | 'g' | 'L' | 'K'; size: number; chunks: Buffer[] } | undefined;
  private pax = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;
  private inEntry = false;
  private done = false;

  constructor(private readonly handler: TarStreamHandler) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.done) {
        this.buf = Buffer.alloc(0);
        return;
      }
      if (this.remaining > 0) {
        if (this.buf.length === 0) return;
        const n = Math.min(this.remaining, this.buf.length);
        const part = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.meta) this.meta.chunks.push(Buffer.from(part));
        else this.handler.data(part);
        if (this.remaining > 0) return;
      }
      if (this.pad > 0) {
        const n = Math.min(this.pad, this.buf.length);
        this.buf = this.buf.subarray(n);
        this.pad -= n;
        if (this.pad > 0) return;
      }
      if (this.meta) this.finishMeta();
      else if (this.inEntry) {
        this.inEntry = false;
        this.handler.entryEnd();
      }
      if (this.buf.length < BLOCK) return;
      const block = this.buf.subarray(0, BLOCK);
      this.buf = this.buf.subarray(BLOCK);
      if (block.every((x) => x === 0)) {
        this.done = true;
        continue;
      }
      this.readHeader(block);
    }
  }

  end(): void {
    if (this.remaining > 0 || this.meta || this.inEntry) throw new TarError('the archive ends in the middle of an entry');
  }

  private finishMeta(): void {
    const m = this.meta!;
    this.meta = undefined;
    const body = Buffer.concat(m.chunks);
    if (m.kind === 'x') this.pax = parsePax(body);
    else if (m.kind === 'L') this.longName = cstring(body, 0, body.length);
    else if (m.kind === 'K') this.longLink = cstring(body, 0, body.length);
  }

  private readHeader(b: Buffer): void {
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (b[i] ?? 0);
    const want = parseNumber(b, 148, 8, 'header checksum');
    if (want !== sum) throw new TarError('bad header checksum (not a tar archive, or a corrupt one)');
    const typeFlag = String.fromCharCode(b[156] ?? 0);
    let size = parseNumber(b, 124, 12, 'size');
    if (typeFlag === 'x' || typeFlag === 'g' || typeFlag === 'L' || typeFlag === 'K') {
      if (size > MAX_META) throw new TarError(`extended header of ${size} bytes exceeds ${MAX_META}`);
      this.meta = { kind: typeFlag, size, chunks: [] };
      this.remaining = size;
      this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (size === 0) this.finishMeta();
      return;
    }
    const prefix = b.toString('ascii', 257, 262) === 'ustar' ? cstring(b, 345, 155) : '';
    const rawName = cstring(b, 0, 100);
    let name = this.pax.get('path') ?? this.longName ?? (prefix !== '' ? `${prefix}/${rawName}` : rawName);
    const linkname = this.pax.get('linkpath') ?? this.longLink ?? cstring(b, 157, 100);
    const paxSize = this.pax.get('size');
    if (paxSize !== undefined) {
      if (!/^\d+$/.test(paxSize)) throw new TarError(`pax size: expected a number, got ${JSON.stringify(paxSize)}`);
      size = Number(paxSize);
    }
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    const kind: TarKind = typeFlag === '0' || typeFlag === '\0' || typeFlag === '7' ? (name.endsWith('/') ? 'dir' : 'file')
      : typeFlag === '5' ? 'dir' : typeFlag === '2' ? 'symlink' : 'other';
    if (kind === 'dir') name = name.replace(/\/+$/, '');
    const dataSize = kind === 'file' || kind === 'other' ? size : 0;
    this.handler.entry({ name, kind, typeFlag, mode: parseNumber(b, 100, 8, 'mode') & 0o7777, size: dataSize, mtime: parseNumber(b, 136, 12, 'mtime'), linkname });
    this.inEntry = true;
    this.remaining = dataSize;
    this.pad = (BLOCK - (dataSize % BLOCK)) % BLOCK;
  }
}
