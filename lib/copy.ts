/**
 * File and directory copies as tar streams (`berth cp`), resolved safely
 * beneath a root directory: the agent uses a container's root filesystem as
 * the root (hostile: its symlinks may point anywhere on the host), the CLI a
 * local directory.
 *
 * Safety: every path is walked one component at a time through directory
 * file descriptors (`/proc/self/fd/N/<name>` with O_NOFOLLOW, the openat
 * idiom), so no symlink is ever followed, not even one swapped in by a
 * process of the container while the copy runs. `..` and absolute archive
 * names are refused. A symlink on the way to a path is refused with
 * CopyPathError; a symlink as the last component is copied as a symlink.
 *
 * Docker's rules for the destination: an existing directory receives the
 * archive's top entry under its own name; a missing path (whose parent is a
 * directory) or an existing non-directory is replaced by the top entry.
 */
import { closeSync, constants as C, fchmodSync, futimesSync, lstatSync, mkdirSync, openSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { open, lstat, readlink, readdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { InvalidArgumentError, NotFoundError, BerthError, ErrorCode } from './errors.js';
import { TarError, TarStreamReader, tarHeader, tarPadding, tarTrailer, type TarHeader } from './tar.js';

/** A path that cannot be copied (a symlink on the way, a missing parent, a wrong type). */
export class CopyPathError extends BerthError {
  override name = 'CopyPathError';
  readonly path: string;
  constructor(path: string, message: string, code: ErrorCode = ErrorCode.InvalidArgument) {
    super(code, message);
    this.path = path;
  }
}

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

function at(fd: number, name: string): string {
  return `/proc/self/fd/${fd}/${name}`;
}

/** "ELOOP" when `path` is a symlink (open with O_DIRECTORY|O_NOFOLLOW says ENOTDIR for one), else `code`. */
function symlinkOr(path: string, code: string | undefined): string | undefined {
  if (code !== 'ENOTDIR') return code;
  try {
    return lstatSync(path).isSymbolicLink() ? 'ELOOP' : code;
  } catch {
    return code;
  }
}

/** Splits a path into clean components; refuses "..". "/" and "" give []. */
export function pathParts(path: string, field = 'path'): string[] {
  if (path.includes('\0')) throw new InvalidArgumentError(`${field}: contains a NUL byte`, { field });
  const parts: string[] = [];
  for (const c of path.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new InvalidArgumentError(`${field}: ${JSON.stringify(path)} contains ".."; expected a path without parent references`, { field });
    parts.push(c);
  }
  return parts;
}

/** Opens the directory `parts` below the directory fd `base` without following symlinks; the caller closes the result. */
function openDirBelow(base: number, parts: readonly string[], shown: string): number {
  let fd = base;
  let walked = '';
  try {
    for (const p of parts) {
      walked += `/${p}`;
      let next: number;
      try {
        next = openSync(at(fd, p), DIR_FLAGS);
      } catch (err) {
        const code = symlinkOr(at(fd, p), (err as NodeJS.ErrnoException).code);
        if (code === 'ELOOP') throw new CopyPathError(shown, `failed to resolve "${shown}": "${walked}" is a symbolic link; expected a path without symlinks (symlinks are not followed, so a copy cannot leave the root)`);
        if (code === 'ENOTDIR') throw new CopyPathError(shown, `failed to resolve "${shown}": "${walked}" is not a directory`);
        if (code === 'ENOENT') throw new CopyPathError(shown, `failed to resolve "${shown}": "${walked}" does not exist`, ErrorCode.NotFound);
        throw err;
      }
      if (fd !== base) closeSync(fd);
      fd = next;
    }
    return fd === base ? openSync(at(base, '.'), DIR_FLAGS) : fd;
  } catch (err) {
    if (fd !== base) closeSync(fd);
    throw err;
  }
}

function openRoot(root: string): number {
  try {
    return openSync(root, C.O_RDONLY | C.O_DIRECTORY);
  } catch (err) {
    throw new NotFoundError('directory', root, { message: `failed to open root "${root}": ${(err as Error).message}`, cause: err });
  }
}

export interface PackOptions {
  /** Called with each piece of the archive; awaited (backpressure). */
  write: (chunk: Buffer) => Promise<void> | void;
  signal?: AbortSignal;
}

/**
 * Writes the file, directory (recursively) or symlink at `path` (below
 * `root`) as a tar stream whose top entry is the path's last component.
 * Sockets, devices and FIFOs are left out.
 */
export async function packPath(root: string, path: string, opts: PackOptions): Promise<{ entries: number; bytes: number }> {
  const parts = pathParts(path);
  const name = parts[parts.length - 1];
  if (name === undefined) throw new InvalidArgumentError(`path: expected a path below "/", got ${JSON.stringify(path)}`, { field: 'path' });
  const rootFd = openRoot(root);
  let parentFd: number | undefined;
  let entries = 0;
  let bytes = 0;
  try {
    parentFd = openDirBelow(rootFd, parts.slice(0, -1), path);
    let st;
    try {
      st = await lstat(at(parentFd, name));
    } catch {
      throw new CopyPathError(path, `failed to copy "${path}": no such file or directory`, ErrorCode.NotFound);
    }
    const walk = async (dirFd: number, entryName: string, archiveName: string, s: Stats): Promise<void> => {
      opts.signal?.throwIfAborted();
      const mtime = Math.floor(s.mtimeMs / 1000);
      const mode = s.mode & 0o7777;
      if (s.isSymbolicLink()) {
        const target = await readlink(at(dirFd, entryName));
        await opts.write(tarHeader({ name: archiveName, kind: 'symlink', typeFlag: '2', mode, size: 0, mtime, linkname: target }));
        entries++;
      } else if (s.isFile()) {
        const fh = await open(at(dirFd, entryName), C.O_RDONLY | C.O_NOFOLLOW);
        try {
          const size = (await fh.stat()).size;
          await opts.write(tarHeader({ name: archiveName, kind: 'file', typeFlag: '0', mode, size, mtime, linkname: '' }));
          let left = size;
          const buf = Buffer.alloc(256 * 1024);
          while (left > 0) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, left), null);
            // A file that shrank while being read is padded to the size announced.
            const piece = bytesRead === 0 ? Buffer.alloc(Math.min(buf.length, left)) : Buffer.from(buf.subarray(0, bytesRead));
            left -= piece.length;
            await opts.write(piece);
          }
          const pad = tarPadding(size);
          if (pad.length > 0) await opts.write(pad);
          bytes += size;
          entries++;
        } finally {
          await fh.close();
        }
      } else if (s.isDirectory()) {
        await opts.write(tarHeader({ name: archiveName, kind: 'dir', typeFlag: '5', mode, size: 0, mtime, linkname: '' }));
        entries++;
        let fd: number;
        try {
          fd = openSync(at(dirFd, entryName), DIR_FLAGS);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ELOOP' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return; // swapped meanwhile
          throw err;
        }
        try {
          const names = (await readdir(`/proc/self/fd/${fd}`)).sort();
          for (const n of names) {
            let cs;
            try {
              cs = await lstat(at(fd, n));
            } catch {
              continue; // removed meanwhile
            }
            await walk(fd, n, `${archiveName}/${n}`, cs);
          }
        } finally {
          closeSync(fd);
        }
      }
    };
    await walk(parentFd, name, name, st);
    await opts.write(tarTrailer());
    return { entries, bytes };
  } finally {
    if (parentFd !== undefined) closeSync(parentFd);
    closeSync(rootFd);
  }
}

export interface UnpackOptions {
  /** Largest number of file bytes accepted; default 4 GiB. */
  maxBytes?: number;
}

/** A tar consumer writing beneath a root; feed it with write(), then finish(). */
export interface Unpacker {
  write(chunk: Buffer): void;
  /** Ends the archive, applies directory modes and times; returns what was written. */
  finish(): { entries: number; bytes: number };
  /** Releases descriptors after a failure. */
  abort(): void;
}

/**
 * Unpacks a tar stream to `dest` (a path below `root`) by Docker's rules (see
 * the file comment). Entries are written as they stream in; nothing is ever
 * written through a symlink.
 */
export function unpackTo(root: string, dest: string, opts: UnpackOptions = {}): Unpacker {
  const maxBytes = opts.maxBytes ?? 4 * 1024 ** 3;
  const destParts = pathParts(dest, 'destination');
  const rootFd = openRoot(root);
  const fds = new Map<string, number>();
  const dirMeta: { fd: number; mode: number; mtime: number }[] = [];
  let baseFd = -1;
  /** When set, the archive's top entry is written under this name in baseFd. */
  let rename: string | undefined;
  try {
    const last = destParts[destParts.length - 1];
    if (last === undefined) {
      baseFd = openDirBelow(rootFd, [], dest);
    } else {
      baseFd = openDirBelow(rootFd, destParts.slice(0, -1), dest);
      let st;
      try {
        st = lstatSync(at(baseFd, last));
      } catch {
        st = undefined;
      }
      if (st?.isSymbolicLink()) {
        throw new CopyPathError(dest, `failed to copy to "${dest}": it is a symbolic link; expected a directory, a file or a new name (symlinks are not followed)`);
      }
      if (st?.isDirectory()) {
        const fd = openSync(at(baseFd, last), DIR_FLAGS);
        closeSync(baseFd);
        baseFd = fd;
      } else {
        rename = last;
      }
    }
  } catch (err) {
    if (baseFd >= 0) closeSync(baseFd);
    closeSync(rootFd);
    throw err;
  }
  fds.set('', baseFd);
  let entries = 0;
  let bytes = 0;
  let fileFd: number | undefined;
  let fileMeta: { mode: number; mtime: number } | undefined;
  let top: string | undefined;

  const reject = (entry: string, problem: string): never => {
    throw new CopyPathError(entry, `failed to copy "${entry}" to "${dest}": ${problem}`);
  };

  const dirFd = (rel: string, entry: string): number => {
    const have = fds.get(rel);
    if (have !== undefined) return have;
    const i = rel.lastIndexOf('/');
    const parent = dirFd(i < 0 ? '' : rel.slice(0, i), entry);
    const name = i < 0 ? rel : rel.slice(i + 1);
    let fd: number;
    try {
      fd = openSync(at(parent, name), DIR_FLAGS);
    } catch (err) {
      const code = symlinkOr(at(parent, name), (err as NodeJS.ErrnoException).code);
      if (code === 'ELOOP') return reject(entry, `"${rel}" is a symbolic link (writing through symlinks is refused)`);
      if (code === 'ENOENT') {
        mkdirSync(at(parent, name), 0o755);
        fd = openSync(at(parent, name), DIR_FLAGS);
      } else if (code === 'ENOTDIR') return reject(entry, `"${rel}" is not a directory`);
      else throw err;
    }
    fds.set(rel, fd);
    return fd;
  };

  const reader = new TarStreamReader({
    entry(h: TarHeader) {
      const parts = pathParts(h.name, 'archive entry');
      if (parts.length === 0) {
        if (h.kind === 'dir') return;
        reject(h.name, 'an entry with an empty name');
      }
      if (top === undefined) {
        top = parts[0];
        if (rename !== undefined && h.kind === 'dir' && parts.length === 1) {
          // A directory onto an existing non-directory: refused, as docker does.
          let st;
          try {
            st = lstatSync(at(baseFd, rename));
          } catch {
            st = undefined;
          }
          if (st && !st.isDirectory()) reject(h.name, `cannot copy a directory onto the file "${dest}"`);
        }
      } else if (parts[0] !== top) {
        reject(h.name, `expected every entry below the top entry "${top}"`);
      }
      if (rename !== undefined) parts[0] = rename;
      const rel = parts.join('/');
      const name = parts[parts.length - 1] as string;
      const parentRel = parts.slice(0, -1).join('/');
      const parent = dirFd(parentRel, h.name);
      let existing;
      try {
        existing = lstatSync(at(parent, name));
      } catch {
        existing = undefined;
      }
      if (h.kind === 'dir') {
        if (existing && !existing.isDirectory()) reject(h.name, `"${rel}" exists and is not a directory`);
        if (!existing) mkdirSync(at(parent, name), 0o700);
        const fd = openSync(at(parent, name), DIR_FLAGS);
        fds.set(rel, fd);
        dirMeta.push({ fd, mode: h.mode, mtime: h.mtime });
      } else if (h.kind === 'file' || h.kind === 'symlink') {
        if (existing?.isDirectory()) reject(h.name, `"${rel}" exists and is a directory`);
        if (existing) unlinkSync(at(parent, name));
        if (h.kind === 'symlink') {
          symlinkSync(h.linkname, at(parent, name));
        } else {
          if (bytes + h.size > maxBytes) throw new CopyPathError(h.name, `failed to copy to "${dest}": the archive holds more than ${maxBytes} bytes`, ErrorCode.ResourceExhausted);
          fileFd = openSync(at(parent, name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
          fileMeta = { mode: h.mode, mtime: h.mtime };
          bytes += h.size;
        }
      } else {
        reject(h.name, `unsupported entry type "${h.typeFlag}" (expected files, directories and symlinks)`);
      }
      entries++;
    },
    data(chunk: Buffer) {
      if (fileFd !== undefined) {
        let off = 0;
        while (off < chunk.length) off += writeSync(fileFd, chunk, off);
      }
    },
    entryEnd() {
      if (fileFd !== undefined && fileMeta) {
        fchmodSync(fileFd, fileMeta.mode);
        futimesSync(fileFd, fileMeta.mtime, fileMeta.mtime);
        closeSync(fileFd);
      }
      fileFd = undefined;
      fileMeta = undefined;
    },
  });

  const release = (): void => {
    if (fileFd !== undefined) closeSync(fileFd);
    fileFd = undefined;
    for (const fd of new Set([...fds.values(), ...dirMeta.map((d) => d.fd)])) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    fds.clear();
    dirMeta.length = 0;
    try {
      closeSync(rootFd);
    } catch {
      // already closed
    }
  };

  return {
    write(chunk) {
      try {
        reader.push(chunk);
      } catch (err) {
        if (err instanceof TarError) throw new CopyPathError(dest, `failed to copy to "${dest}": malformed archive: ${err.message}`);
        throw err;
      }
    },
    finish() {
      try {
        try {
          reader.end();
        } catch (err) {
          if (err instanceof TarError) throw new CopyPathError(dest, `failed to copy to "${dest}": malformed archive: ${err.message}`);
          throw err;
        }
        if (top === undefined) throw new CopyPathError(dest, `failed to copy to "${dest}": the archive is empty`);
        // Deepest first, so setting a directory's time is not undone by writes below it.
        for (const d of [...dirMeta].reverse()) {
          fchmodSync(d.fd, d.mode);
          futimesSync(d.fd, d.mtime, d.mtime);
        }
        return { entries, bytes };
      } finally {
        release();
      }
    },
    abort: release,
  };
}

/** Reads a (small) regular file below `root` without following any symlink; throws when it is not there. */
export async function readFileBelow(root: string, path: string, maxBytes = 1024 * 1024): Promise<string> {
  const parts = pathParts(path);
  const name = parts[parts.length - 1];
  if (name === undefined) throw new InvalidArgumentError(`path: expected a file path, got ${JSON.stringify(path)}`, { field: 'path' });
  const rootFd = openRoot(root);
  try {
    const dirFd = openDirBelow(rootFd, parts.slice(0, -1), path);
    try {
      const fh = await open(at(dirFd, name), C.O_RDONLY | C.O_NOFOLLOW);
      try {
        const st = await fh.stat();
        if (!st.isFile()) throw new CopyPathError(path, `failed to read "${path}": not a regular file`);
        const buf = Buffer.alloc(Math.min(st.size, maxBytes));
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
        return buf.toString('utf8', 0, bytesRead);
      } finally {
        await fh.close();
      }
    } finally {
      closeSync(dirFd);
    }
  } finally {
    closeSync(rootFd);
  }
}
