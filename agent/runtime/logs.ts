/**
 * Reading container logs written by the shim (format: agent/sys/native/main.c,
 * "CONTAINER LOG FORMAT"; CRI style, one record per line:
 * `<RFC 3339 nanosecond time> <stdout|stderr> <F|P> <content>`).
 *
 * Rotation is the shim's: `<log>` is current, `<log>.1` the one before, and so
 * on up to `<log>.<files-1>`. readLogs reads oldest first; with `follow` it
 * keeps reading the current file, switching to the new file when the shim
 * rotates (the open handle still drains the renamed one first).
 */
import { constants as fsc } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { InvalidArgumentError } from '../../lib/errors.js';

export type LogStream = 'stdout' | 'stderr';

export interface LogEntry {
  /** RFC 3339 with nanoseconds, UTC. */
  time: string;
  stream: LogStream;
  /** Content without the trailing newline. */
  text: string;
  /** true when this is a piece of a longer line (the next entry continues it). */
  partial: boolean;
}

export interface ReadLogsOptions {
  /** Only the last N entries of what is there now (follow continues after them). */
  tail?: number;
  /** Only entries at or after this time. */
  since?: Date;
  follow?: boolean;
  /** With follow: resolves true once no more output can come (the container exited). */
  isDone?: () => Promise<boolean>;
  /** How often to look for new data while following, ms (default 100). */
  pollMs?: number;
  signal?: AbortSignal;
}

const LINE = /^(\S+) (stdout|stderr) ([FP]) (.*)$/s;

export function parseLogLine(line: string): LogEntry | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  return { time: m[1] ?? '', stream: m[2] as LogStream, partial: m[3] === 'P', text: m[4] ?? '' };
}

/** Parses "10m", "90s", "2h" or an RFC 3339 time into a Date (relative to now). */
export function parseSince(value: string, now = Date.now()): Date {
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(rel[1]) * unit);
  }
  const t = Date.parse(value);
  if (Number.isNaN(t)) {
    throw new InvalidArgumentError(`since: expected a duration like "10m" or an RFC 3339 time, got "${value}"`, { field: 'since' });
  }
  return new Date(t);
}

function timeOf(entry: LogEntry): number {
  return Date.parse(entry.time);
}

function splitLines(text: string): { lines: string[]; rest: string } {
  const parts = text.split('\n');
  const rest = parts.pop() ?? '';
  return { lines: parts, rest };
}

async function readIfExists(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}

/** Yields log entries of the log at `path` (with up to `maxFiles - 1` rotated files). */
export async function* readLogs(path: string, maxFiles: number, options: ReadLogsOptions = {}): AsyncGenerator<LogEntry> {
  if (options.tail !== undefined && (!Number.isSafeInteger(options.tail) || options.tail < 0)) {
    throw new InvalidArgumentError(`tail: expected a whole number >= 0, got ${options.tail}`, { field: 'tail' });
  }
  const since = options.since?.getTime();
  const keep = (e: LogEntry | undefined): e is LogEntry => e !== undefined && (since === undefined || timeOf(e) >= since);

  // Open the current file first so nothing written while we read the old ones is lost.
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsc.O_RDONLY);
  } catch {
    fh = undefined;
  }
  const entries: LogEntry[] = [];
  for (let i = maxFiles - 1; i >= 1; i--) {
    const { lines } = splitLines(await readIfExists(`${path}.${i}`));
    for (const l of lines) {
      const e = parseLogLine(l);
      if (keep(e)) entries.push(e);
    }
  }
  let offset = 0;
  let rest = '';
  const drain = async (): Promise<LogEntry[]> => {
    if (!fh) return [];
    const out: LogEntry[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
      const split = splitLines(rest + buf.subarray(0, bytesRead).toString('utf8'));
      rest = split.rest;
      for (const l of split.lines) {
        const e = parseLogLine(l);
        if (keep(e)) out.push(e);
      }
    }
    return out;
  };
  try {
    entries.push(...(await drain()));
    const start = options.tail !== undefined ? Math.max(0, entries.length - options.tail) : 0;
    for (let i = start; i < entries.length; i++) yield entries[i] as LogEntry;
    if (!options.follow) return;

    const pollMs = options.pollMs ?? 100;
    for (;;) {
      if (options.signal?.aborted) return;
      const done = options.isDone ? await options.isDone() : false;
      for (const e of await drain()) yield e;
      // Rotated? The path now names a different file: finish the old one, switch.
      const current = await stat(path).catch(() => undefined);
      const mine = fh ? await fh.stat().catch(() => undefined) : undefined;
      if (current && (!mine || current.ino !== mine.ino)) {
        for (const e of await drain()) yield e;
        await fh?.close();
        fh = await open(path, fsc.O_RDONLY).catch(() => undefined);
        offset = 0;
        rest = '';
        continue;
      }
      if (done) {
        for (const e of await drain()) yield e;
        return;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, pollMs);
        options.signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  } finally {
    await fh?.close();
  }
}
