/**
 * Rules for volumes and mounts, shared by the CLI (`-v`), workload files
 * (`spec.volumes`), the controller and the agent, so each side refuses the
 * same things with the same words.
 *
 * Vocabulary
 *   volume       a named directory that outlives containers; it lives on one
 *                node under the agent's root (<root>/volumes/<name>/_data).
 *   bind mount   a host directory or file mounted into a container; the agent
 *                only allows paths under its --allow-bind directories.
 *   mount        one entry of ContainerSpec.mounts: type "volume" (source = a
 *                volume name) or "bind" (source = an absolute host path),
 *                destination (absolute path inside the container), read only.
 */
import { posix } from 'node:path';
import type { FieldProblem } from './errors.js';
import { InvalidArgumentError } from './errors.js';

/** The shape of a mount (structurally the proto MountSpec). */
export interface MountLike {
  readonly type: string;
  readonly source: string;
  readonly destination: string;
  readonly readOnly: boolean;
}

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const MAX_MOUNTS = 64;
const MAX_PATH = 4096;

/** Destinations a mount may not cover: the container's own kernel filesystems and the files the runtime writes. */
const RESERVED_DESTINATIONS = ['/proc', '/sys', '/dev'];
const RESERVED_FILES = ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf'];

function q(v: string): string {
  return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}...` : v);
}

/** A volume name: 1-64 letters, digits, "_", "." or "-", starting with a letter or digit. */
export function volumeNameProblem(name: string): string | undefined {
  if (VOLUME_NAME.test(name)) return undefined;
  return `expected a volume name of 1 to 64 letters, digits, "_", "." and "-", starting with a letter or digit, got ${q(name)}`;
}

/** An absolute, clean path inside the container that does not cover /proc, /sys, /dev or the runtime's /etc files. */
export function mountDestinationProblem(dest: string): string | undefined {
  if (dest === '' || !dest.startsWith('/')) return `expected an absolute path inside the container such as "/data", got ${q(dest)}`;
  if (dest.includes('\0') || dest.length > MAX_PATH) return `expected a path without NUL characters of at most ${MAX_PATH} characters, got ${q(dest)}`;
  if (dest.split('/').some((p) => p === '..' || p === '.')) return `expected a path without "." or ".." components, got ${q(dest)}`;
  const clean = posix.normalize(dest).replace(/\/+$/, '');
  if (clean === '') return `expected a directory below "/", got ${q(dest)} (the root filesystem cannot be replaced)`;
  for (const r of RESERVED_DESTINATIONS) {
    if (clean === r || clean.startsWith(`${r}/`)) return `expected a path outside ${r}, which the runtime mounts, got ${q(dest)}`;
  }
  if (RESERVED_FILES.includes(clean)) return `expected a path other than ${clean}, which the runtime writes, got ${q(dest)}`;
  return undefined;
}

/** An absolute host path without "." or ".." components. */
export function bindSourceProblem(source: string): string | undefined {
  if (!source.startsWith('/')) return `expected an absolute host path such as "/srv/data", got ${q(source)}`;
  if (source.includes('\0') || source.length > MAX_PATH) return `expected a path without NUL characters of at most ${MAX_PATH} characters, got ${q(source)}`;
  if (source.split('/').some((p) => p === '..' || p === '.')) return `expected a path without "." or ".." components, got ${q(source)}`;
  return undefined;
}

/** The destination as compared for duplicates ("/data/" and "/data//" are "/data"). */
export function cleanDestination(dest: string): string {
  return posix.normalize(dest).replace(/(.)\/+$/, '$1');
}

/** Every problem of a list of mounts (type, source, destination, duplicate destinations), with paths under `path`. */
export function mountProblems(mounts: readonly MountLike[], path = 'spec.mounts'): FieldProblem[] {
  const problems: FieldProblem[] = [];
  if (mounts.length > MAX_MOUNTS) problems.push({ path, message: `expected at most ${MAX_MOUNTS} mounts, got ${mounts.length}` });
  const seen = new Map<string, number>();
  mounts.forEach((m, i) => {
    const at = `${path}[${i}]`;
    if (m.type === 'volume') {
      const p = volumeNameProblem(m.source);
      if (p) problems.push({ path: `${at}.source`, message: p });
    } else if (m.type === 'bind') {
      const p = bindSourceProblem(m.source);
      if (p) problems.push({ path: `${at}.source`, message: p });
    } else {
      problems.push({ path: `${at}.type`, message: `expected "volume" or "bind", got ${q(m.type)}` });
    }
    const d = mountDestinationProblem(m.destination);
    if (d) {
      problems.push({ path: `${at}.destination`, message: d });
    } else {
      const clean = cleanDestination(m.destination);
      const before = seen.get(clean);
      if (before !== undefined) problems.push({ path: `${at}.destination`, message: `expected each destination once, but ${q(clean)} is also the destination of ${path}[${before}]` });
      else seen.set(clean, i);
    }
  });
  return problems;
}

/** The names of the volumes a list of mounts uses, in order, each once. */
export function volumeNames(mounts: readonly MountLike[]): string[] {
  const out: string[] = [];
  for (const m of mounts) if (m.type === 'volume' && !out.includes(m.source)) out.push(m.source);
  return out;
}

/**
 * Parses a `-v` value: `NAME:/dest[:ro|:rw]` (a volume) or `/host/path:/dest[:ro|:rw]`
 * (a bind mount). Throws InvalidArgumentError naming `field`.
 */
export function parseVolumeFlag(text: string, field = '-v'): MountLike {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`${field}: ${why}`, { field });
  };
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3) bad(`expected NAME:/path[:ro] or /host/path:/path[:ro], got ${q(text)}`);
  const [source = '', destination = '', mode] = parts;
  let readOnly = false;
  if (mode !== undefined) {
    if (mode === 'ro') readOnly = true;
    else if (mode !== 'rw') bad(`expected the mode "ro" or "rw" after the second ":", got ${q(mode)} in ${q(text)}`);
  }
  if (source === '') bad(`expected a volume name or a host path before ":", got ${q(text)}`);
  const type = source.startsWith('/') ? 'bind' : 'volume';
  const sp = type === 'bind' ? bindSourceProblem(source) : volumeNameProblem(source);
  if (sp) bad(`${type === 'bind' ? 'host path' : 'volume'}: ${sp}`);
  const dp = mountDestinationProblem(destination);
  if (dp) bad(`destination: ${dp}`);
  return { type, source, destination, readOnly };
}
