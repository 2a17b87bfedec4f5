/**
 * A streaming tar reader: bytes are pushed in as they arrive (from gunzip) and
 * entries come out synchronously, so download, decompression and unpacking
 * overlap without buffering whole files.
 *
 * Formats: POSIX ustar (name + prefix), pax extended headers (`x`, and global
 * `g`: path, linkpath, size, uid, gid, mtime, SCHILY.xattr.*), GNU long names
 * and long link names (`L`, `K`), base-256 numeric fields. Any other entry
 * type is reported as `unknown` with its type flag so the caller can refuse it.
 *
 * Lifecycle: `push(chunk)` any number of times, then `end()`, which throws
 * when the archive stopped in the middle of an entry. For each entry the
 * handler gets `entry(e)`, then `data(chunk)` for its bytes (`size` total),
 * then `entryEnd()`. Any exception from the handler propagates out of `push`.
 */

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo' | 'unknown';

export interface TarEntry {
  /** Name as found in the archive (after pax/GNU overrides), not yet cleaned. */
  name: string;
  type: TarEntryType;
  /** The raw type flag character ('0', '5', 'S', ...). */
  typeFlag: string;
  /** Permission bits including setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (may have a fraction from pax). */
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from pax `SCHILY.xattr.NAME` records. */
  xattrs: Map<string, Buffer>;
}

export interface TarHandler {
  entry(e: TarEntry): void;
  data(chunk: Buffer): void;
  entryEnd(): void;
}

export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

const BLOCK = 512;
/** Largest pax / GNU long-name payload accepted (hostile archives could claim gigabytes). */
const MAX_META = 1024 * 1024;

function cstring(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  const stop = end < 0 || end > start + len ? start + len : end;
  return buf.toString('utf8', start, stop);
}

function numeric(buf: Buffer, start: number, len: number, field: string): number {
  const first = buf[start] ?? 0;
  if (first & 0x80) {
    // base-256: big-endian two's complement, high bit of the first byte is the marker.
    if (first & 0x40) throw new TarFormatError(`negative base-256 number in "${field}"`);
    let v = first & 0x3f;
    for (let i = 1; i < len; i++) {
      v = v * 256 + (buf[start + i] ?? 0);
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`number in "${field}" is too large`);
    }
    return v;
  }
  const s = cstring(buf, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`invalid octal number ${JSON.stringify(s)} in "${field}"`);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw new TarFormatError(`number in "${field}" is too large`);
  return v;
}

function checksumOk(h: Buffer): boolean {
  let stored: number;
  try {
    stored = numeric(h, 148, 8, 'chksum');
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

interface PaxOverrides {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  xattrs: Map<string, Buffer>;
}

function parsePax(data: Buffer, into: PaxOverrides): void {
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) throw new TarFormatError('malformed pax record: no length');
    const lenText = data.toString('latin1', pos, space);
    if (!/^[0-9]+$/.test(lenText)) throw new TarFormatError(`malformed pax record length ${JSON.stringify(lenText)}`);
    const len = parseInt(lenText, 10);
    const end = pos + len;
    if (len < 5 || end > data.length || data[end - 1] !== 0x0a) throw new TarFormatError('malformed pax record: bad length');
    const eq = data.indexOf(0x3d, space + 1);
    if (eq < 0 || eq >= end) throw new TarFormatError('malformed pax record: no "="');
    const key = data.toString('utf8', space + 1, eq);
    const value = data.subarray(eq + 1, end - 1);
    const text = (): string => value.toString('utf8');
    const int = (): number => {
      const t = text();
      if (!/^[0-9]+$/.test(t)) throw new TarFormatError(`malformed pax ${key} ${JSON.stringify(t)}`);
      const v = parseInt(t, 10);
      if (!Number.isSafeInteger(v)) throw new TarFormatError(`pax ${key} is too large`);
      return v;
    };
    switch (key) {
      case 'path':
        into.path = text();
        break;
      case 'linkpath':
        into.linkpath = text();
        break;
      case 'size':
        into.size = int();
        break;
      case 'uid':
        into.uid = int();
        break;
      case 'gid':
        into.gid = int();
        break;
      case 'mtime': {
        const t = text();
        if (!/^-?[0-9]+(\.[0-9]+)?$/.test(t)) throw new TarFormatError(`malformed pax mtime ${JSON.stringify(t)}`);
        into.mtime = Number(t);
        break;
      }
      default:
        if (key.startsWith('SCHILY.xattr.')) into.xattrs.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
        // Other keys (atime, ctime, comments, charset, ...) do not affect the unpacked tree.
        break;
    }
    pos = end;
  }
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

type State = 'header' | 'data' | 'meta' | 'pad' | 'end';

export class TarReader {
  private state: State = 'header';
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  private remaining = 0;
  private pad = 0;
  private metaKind = '';
  private metaParts: Buffer[] = [];
  private pax: PaxOverrides = { xattrs: new Map() };
  private globalPax: PaxOverrides = { xattrs: new Map() };
  private longName: string | undefined;
  private longLink: string | undefined;
  private zeroBlocks = 0;
  /** Name of the entry being read, for error messages. */
  current = '';

  constructor(private readonly handler: TarHandler) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.state) {
        case 'end':
          return; // bytes after the end-of-archive marker are ignored, like tar(1)
        case 'header': {
          const take = Math.min(BLOCK - this.headerFill, chunk.length - pos);
          chunk.copy(this.header, this.headerFill, pos, pos + take);
          this.headerFill += take;
          pos += take;
          if (this.headerFill === BLOCK) {
            this.headerFill = 0;
            this.onHeader();
          }
          break;
        }
        case 'data': {
          const take = Math.min(this.remaining, chunk.length - pos);
          this.handler.data(chunk.subarray(pos, pos + take));
          this.remaining -= take;
          pos += take;
          if (this.remaining === 0) this.finishData();
          break;
        }
        case 'meta': {
          const take = Math.min(this.remaining, chunk.length - pos);
          this.metaParts.push(Buffer.from(chunk.subarray(pos, pos + take)));
          this.remaining -= take;
          pos += take;
          if (this.remaining === 0) this.finishMeta();
          break;
        }
        case 'pad': {
          const take = Math.min(this.pad, chunk.length - pos);
          this.pad -= take;
          pos += take;
          if (this.pad === 0) this.state = 'header';
          break;
        }
      }
    }
  }

  /** Checks that the archive ended on an entry boundary. */
  end(): void {
    const pendingMeta = this.longName !== undefined || this.longLink !== undefined || Object.keys(this.pax).length > 1 || this.pax.xattrs.size > 0;
    if (this.state === 'end' || (this.state === 'header' && this.headerFill === 0 && this.metaKind === '' && !pendingMeta)) return;
    throw new TarFormatError(this.current ? `archive is truncated inside entry ${JSON.stringify(this.current)}` : 'archive is truncated');
  }

  private onHeader(): void {
    const h = this.header;
    if (h.every((b) => b === 0)) {
      this.zeroBlocks++;
      if (this.zeroBlocks >= 2) this.state = 'end';
      return;
    }
    if (this.zeroBlocks > 0) throw new TarFormatError('a lone zero block inside the archive');
    if (!checksumOk(h)) throw new TarFormatError(`header checksum mismatch after entry ${JSON.stringify(this.current)}`);
    const typeFlag = String.fromCharCode(h[156] ?? 0);
    const magic = h.toString('latin1', 257, 263);
    let name = cstring(h, 0, 100);
    if (magic === 'ustar\0') {
      const prefix = cstring(h, 345, 155);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    const size = numeric(h, 124, 12, 'size');
    if (typeFlag === 'x' || typeFlag === 'g' || typeFlag === 'L' || typeFlag === 'K') {
      if (size > MAX_META) throw new TarFormatError(`${typeFlag === 'x' || typeFlag === 'g' ? 'pax header' : 'GNU long name'} of ${size} bytes is larger than ${MAX_META}`);
      this.metaKind = typeFlag;
      this.metaParts = [];
      this.remaining = size;
      this.pad = (BLOCK - (size % BLOCK)) % BLOCK;
      this.state = 'meta';
      if (size === 0) this.finishMeta();
      return;
    }
    const pax = this.pax;
    const g = this.globalPax;
    const e: TarEntry = {
      name: this.longName ?? pax.path ?? g.path ?? name,
      type: TYPES[typeFlag] ?? 'unknown',
      typeFlag,
      mode: numeric(h, 100, 8, 'mode') & 0o7777,
      uid: pax.uid ?? g.uid ?? numeric(h, 108, 8, 'uid'),
      gid: pax.gid ?? g.gid ?? numeric(h, 116, 8, 'gid'),
      size: pax.size ?? g.size ?? size,
      mtime: pax.mtime ?? g.mtime ?? numeric(h, 136, 12, 'mtime'),
      linkname: this.longLink ?? pax.linkpath ?? g.linkpath ?? cstring(h, 157, 100),
      devmajor: typeFlag === '3' || typeFlag === '4' ? numeric(h, 329, 8, 'devmajor') : 0,
      devminor: typeFlag === '3' || typeFlag === '4' ? numeric(h, 337, 8, 'devminor') : 0,
      xattrs: new Map([...g.xattrs, ...pax.xattrs]),
    };
    // Directory entries written by old tools: regular type with a trailing slash.
    if (e.type === 'file' && typeFlag !== '7' && e.name.endsWith('/')) e.type = 'dir';
    // Hard links, symlinks, devices, fifos and dirs carry no data.
    if (e.type !== 'file' && e.type !== 'unknown') e.size = 0;
    this.pax = { xattrs: new Map() };
    this.longName = undefined;
    this.longLink = undefined;
    this.current = e.name;
    this.handler.entry(e);
    this.remaining = e.size;
    this.pad = (BLOCK - (e.size % BLOCK)) % BLOCK;
    this.state = 'data';
    if (e.size === 0) this.finishData();
  }

  private finishData(): void {
    this.handler.entryEnd();
    this.state = this.pad > 0 ? 'pad' : 'header';
  }

  private finishMeta(): void {
    const data = Buffer.concat(this.metaParts);
    this.metaParts = [];
    switch (this.metaKind) {
      case 'x':
        parsePax(data, this.pax);
        break;
      case 'g':
        parsePax(data, this.globalPax);
        break;
      case 'L':
        this.longName = cstring(data, 0, data.length);
        break;
      case 'K':
        this.longLink = cstring(data, 0, data.length);
        break;
    }
    this.metaKind = '';
    this.state = this.pad > 0 ? 'pad' : 'header';
  }
}
