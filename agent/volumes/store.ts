/**
 * The node's volumes and bind mounts.
 *
 * Vocabulary (see lib/volumes.ts): a volume is a named directory on this node
 * that outlives the containers that mount it; a bind mount mounts a host path,
 * allowed only under one of the agent's --allow-bind directories.
 *
 * Layout under the agent's root (`<root>/volumes/`):
 *   <name>/volume.json   { version: 1, name, createdUnixMs, labels }
 *   <name>/_data/        the data containers see (created 0755, owned by root)
 *   .tmp-*, .trash-*     a volume being created or removed (cleaned at start)
 * A volume appears by renaming a complete temporary directory into place and
 * disappears by renaming it away first, so a crash never leaves half of one.
 *
 * Lifecycle: `create` (idempotent), `get`/`list`, `remove` (refused while a
 * container on this node mounts it, as `inUse` says), and for containers
 * `checkBinds` (before anything of the container is made) and `resolve`
 * (host paths for the runtime; volumes are created on first use). Calls on
 * one volume name are serialized.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InternalError, InvalidArgumentError, bindSourceProblem, labelKeyProblem, labelValueProblem, messageOf, mountProblems, volumeNameProblem, type Logger, type MountLike,
} from '../../lib/index.js';
import { BindNotAllowedError, VolumeInUseError } from './errors.js';

export interface VolumeInfo {
  name: string;
  /** The data directory (`<root>/volumes/<name>/_data`). */
  mountpoint: string;
  createdUnixMs: number;
  labels: Record<string, string>;
}

/** One mount ready for the runtime: a host path and where it goes. */
export interface ResolvedMount {
  source: string;
  destination: string;
  readOnly: boolean;
}

export interface LocalVolumesOptions {
  /** The agent's data root. */
  root: string;
  /** Directories bind mounts may come from (absolute; resolved with realpath at start). */
  allowBind?: readonly string[];
  /** Names of the containers on this node that mount a volume. */
  inUse?: (volume: string) => string[];
  logger: Logger;
}

interface VolumeFile {
  version: 1;
  name: string;
  createdUnixMs: number;
  labels: Record<string, string>;
}

/** Checks an --allow-bind list: absolute, clean paths. Throws InvalidArgumentError naming `field`. */
export function checkAllowBind(paths: readonly string[], field = '--allow-bind'): string[] {
  return paths.map((p) => {
    const problem = bindSourceProblem(p);
    if (problem) throw new InvalidArgumentError(`${field}: ${problem}`, { field });
    return p.length > 1 ? p.replace(/\/+$/, '') : p;
  });
}

function quoteList(paths: readonly string[]): string {
  return paths.map((p) => `"${p}"`).join(', ');
}

function under(path: string, root: string): boolean {
  return root === '/' || path === root || path.startsWith(`${root}/`);
}

export class LocalVolumes {
  readonly dir: string;
  private readonly log: Logger;
  private allowed: string[] | undefined;
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: LocalVolumesOptions) {
    this.dir = join(opts.root, 'volumes');
    this.log = opts.logger.child({ component: 'volumes' });
  }

  /** The --allow-bind directories as given. */
  get allowBind(): readonly string[] {
    return this.opts.allowBind ?? [];
  }

  /** Creates the volumes directory and deletes what a crash left of creates and removes. */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.dir)) {
      if (name.startsWith('.tmp-') || name.startsWith('.trash-')) {
        this.log.warn('deleting a volume left half created or removed', { dir: name });
        await rm(join(this.dir, name), { recursive: true, force: true });
      }
    }
    await this.allowedRoots();
  }

  private async allowedRoots(): Promise<string[]> {
    if (this.allowed) return this.allowed;
    const out: string[] = [];
    for (const p of checkAllowBind(this.opts.allowBind ?? [])) {
      try {
        out.push(await realpath(p));
      } catch (err) {
        this.log.warn('an --allow-bind directory does not exist; ignoring it', { path: p, reason: messageOf(err) });
      }
    }
    this.allowed = out;
    return out;
  }

  private locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    this.locks.set(name, tail);
    void tail.then(() => {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    });
    return p;
  }

  private static checkName(name: string, field = 'name'): void {
    const p = volumeNameProblem(name);
    if (p) throw new InvalidArgumentError(`${field}: ${p}`, { field });
  }

  private async read(name: string): Promise<VolumeInfo | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.dir, name, 'volume.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new InternalError(`failed to read volume "${name}": ${messageOf(err)}`, { cause: err });
    }
    let f: VolumeFile;
    try {
      f = JSON.parse(text) as VolumeFile;
      if (f.version !== 1 || f.name !== name) throw new Error(`expected version 1 and name "${name}"`);
    } catch (err) {
      throw new InternalError(`failed to read volume "${name}": volume.json: ${messageOf(err)}`, { cause: err });
    }
    return { name, mountpoint: join(this.dir, name, '_data'), createdUnixMs: f.createdUnixMs, labels: { ...f.labels } };
  }

  /** Creates a volume; an existing one is returned as it is. */
  async create(name: string, opts: { labels?: Record<string, string>; createdUnixMs?: number } = {}): Promise<VolumeInfo> {
    LocalVolumes.checkName(name);
    const labels = opts.labels ?? {};
    for (const [k, v] of Object.entries(labels)) {
      const p = labelKeyProblem(k) ?? labelValueProblem(v);
      if (p) throw new InvalidArgumentError(`labels.${k.slice(0, 64)}: ${p}`, { field: `labels.${k.slice(0, 64)}` });
    }
    return this.locked(name, () => this.createLocked(name, labels, opts.createdUnixMs));
  }

  private async createLocked(name: string, labels: Record<string, string>, createdUnixMs: number | undefined): Promise<VolumeInfo> {
    const have = await this.read(name);
    if (have) return have;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.tmp-${randomBytes(6).toString('hex')}`);
    const file: VolumeFile = { version: 1, name, createdUnixMs: createdUnixMs && createdUnixMs > 0 ? createdUnixMs : Date.now(), labels };
    try {
      await mkdir(tmp, { mode: 0o700 });
      await mkdir(join(tmp, '_data'), { mode: 0o755 });
      await writeFile(join(tmp, 'volume.json'), JSON.stringify(file), { mode: 0o600 });
      await rename(tmp, join(this.dir, name));
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw new InternalError(`failed to create volume "${name}": ${messageOf(err)}`, { cause: err });
    }
    this.log.info('volume created', { volume: name });
    return { name, mountpoint: join(this.dir, name, '_data'), createdUnixMs: file.createdUnixMs, labels: { ...labels } };
  }

  async get(name: string): Promise<VolumeInfo | undefined> {
    LocalVolumes.checkName(name);
    return this.read(name);
  }

  /** Every volume on this node, by name. */
  async list(): Promise<VolumeInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: VolumeInfo[] = [];
    for (const n of names.sort()) {
      if (volumeNameProblem(n) !== undefined) continue;
      try {
        const v = await this.read(n);
        if (v) out.push(v);
      } catch (err) {
        this.log.warn('skipping an unreadable volume', { volume: n, reason: messageOf(err) });
      }
    }
    return out;
  }

  /** Names of the containers on this node that mount `name`. */
  usedBy(name: string): string[] {
    return this.opts.inUse?.(name) ?? [];
  }

  /** Deletes a volume and its data; false when there was none. Refused while a container mounts it. */
  async remove(name: string): Promise<boolean> {
    LocalVolumes.checkName(name);
    return this.locked(name, async () => {
      const users = this.usedBy(name);
      if (users.length > 0) throw new VolumeInUseError(name, users);
      const have = await stat(join(this.dir, name)).then(() => true, () => false);
      if (!have) return false;
      const trash = join(this.dir, `.trash-${randomBytes(6).toString('hex')}`);
      await rename(join(this.dir, name), trash);
      await rm(trash, { recursive: true, force: true });
      this.log.info('volume removed', { volume: name });
      return true;
    });
  }

  /**
   * Resolves a bind source against the allow list: the real path (symlinks
   * followed) must be an allowed directory or under one. Returns the real path.
   *
   * Known limit: the runtime mounts the returned path later by name, so a
   * process that can write inside an allowed directory (another container
   * with it mounted read-write) could swap a component for a symlink in
   * between. Allow only directories that containers cannot write, or mount
   * writable ones read-only, until the mount is made from an fd opened here.
   */
  async checkBind(source: string, destination: string): Promise<string> {
    const problem = bindSourceProblem(source);
    if (problem) throw new InvalidArgumentError(`bind mount source: ${problem}`, { field: 'source' });
    const roots = await this.allowedRoots();
    const given = this.allowBind;
    if (given.length === 0) {
      throw new BindNotAllowedError(`failed to mount "${source}" at "${destination}": this agent allows no bind mounts; expected a named volume, or start the agent with --allow-bind DIR`, { path: source, allowed: [] });
    }
    const refuse = (why: string): never => {
      throw new BindNotAllowedError(`failed to mount "${source}" at "${destination}": ${why}; bind mounts are only allowed from under ${quoteList(given)} (berth agent --allow-bind)`, { path: source, allowed: given });
    };
    if (!given.some((r) => under(source, r))) refuse(`"${source}" is not under an allowed directory`);
    let real: string;
    try {
      real = await realpath(source);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new InvalidArgumentError(`failed to mount "${source}" at "${destination}": the host path does not exist; expected an existing file or directory`, { field: 'source' });
      }
      throw new InternalError(`failed to mount "${source}" at "${destination}": ${messageOf(err)}`, { cause: err });
    }
    if (!roots.some((r) => under(real, r))) refuse(`"${source}" resolves to "${real}", which is not under an allowed directory`);
    return real;
  }

  /** Checks every mount's shape and every bind source (nothing is created). */
  async checkBinds(mounts: readonly MountLike[]): Promise<void> {
    const problems = mountProblems(mounts);
    if (problems.length > 0) throw new InvalidArgumentError(`${problems[0]?.path}: ${problems[0]?.message}`, { field: problems[0]?.path ?? 'spec.mounts' });
    for (const m of mounts) if (m.type === 'bind') await this.checkBind(m.source, m.destination);
  }

  /** Host paths for the runtime, in order; volumes are created on first use. */
  async resolve(mounts: readonly MountLike[], opts: { signal?: AbortSignal } = {}): Promise<ResolvedMount[]> {
    await this.checkBinds(mounts);
    const out: ResolvedMount[] = [];
    for (const m of mounts) {
      opts.signal?.throwIfAborted();
      if (m.type === 'bind') {
        out.push({ source: await this.checkBind(m.source, m.destination), destination: m.destination, readOnly: m.readOnly });
      } else {
        const v = await this.create(m.source);
        out.push({ source: v.mountpoint, destination: m.destination, readOnly: m.readOnly });
      }
    }
    return out;
  }
}
