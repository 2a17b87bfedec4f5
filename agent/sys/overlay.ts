/**
 * overlayfs mounts for container root filesystems.
 *
 * The kernel limits mount data to one page (4096 bytes including the NUL), so
 * lower directories are passed as paths relative to `cwd`, which the mount
 * process runs in; callers keep those paths short (agent/snapshots uses
 * `layers/<12 hex>/fs`, about 23 bytes a layer, so 60+ layers fit).
 *
 * Lifecycle: `mount` creates one overlay at `target` (which must exist);
 * `unmount` detaches it (lazily, so a busy mount cannot wedge cleanup);
 * `isMounted` reads /proc/self/mountinfo.
 */
import { spawn } from 'node:child_process';
import { readFile, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';

export interface OverlayMountRequest {
  /** Directory the lower/upper/work paths are relative to. */
  cwd: string;
  /** Lower directories, topmost first (overlayfs order). */
  lowerdirs: string[];
  /** Upper and work dirs; omit both for a read-only overlay (needs 2+ lowers). */
  upperdir?: string;
  workdir?: string;
  /** Absolute mount point. */
  target: string;
  readonly?: boolean;
  signal?: AbortSignal;
}

/** Role interface consumed by agent/snapshots. */
export interface OverlayMounter {
  mount(req: OverlayMountRequest): Promise<void>;
  unmount(target: string, opts?: { signal?: AbortSignal }): Promise<void>;
  isMounted(target: string): Promise<boolean>;
}

/** Longest mount data the kernel accepts (one page minus the terminating NUL). */
export const MAX_MOUNT_DATA = 4095;

const FORBIDDEN = /[,:\\\n\0]/;

/** Builds the overlay option string; throws when a path cannot be expressed or it is too long. */
export function overlayOptions(req: OverlayMountRequest): string {
  for (const p of [...req.lowerdirs, req.upperdir ?? '', req.workdir ?? '']) {
    if (FORBIDDEN.test(p)) throw new Error(`overlay path "${p}" contains ",", ":", "\\" or a newline, which overlay options cannot carry`);
  }
  if (req.lowerdirs.length === 0) throw new Error('overlay mount needs at least one lower directory');
  const parts = [`lowerdir=${req.lowerdirs.join(':')}`];
  if (req.upperdir !== undefined) parts.push(`upperdir=${req.upperdir}`, `workdir=${req.workdir ?? ''}`);
  if (req.readonly) parts.push('ro');
  const data = parts.join(',');
  if (data.length > MAX_MOUNT_DATA) {
    throw new Error(`overlay mount options are ${data.length} bytes for ${req.lowerdirs.length} layers (the kernel accepts at most ${MAX_MOUNT_DATA})`);
  }
  return data;
}

function run(command: string, args: string[], cwd: string | undefined, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (t: string) => {
      if (stderr.length < 4096) stderr += t;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} exited with code ${code}: ${stderr.trim()}`));
    });
  });
}

/** Unescapes the octal escapes mountinfo uses for spaces and the like. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The mount calls themselves, made by a process that is already running (the
 * agent's helper spawner, agent/sys/linux.ts LinuxSys): a container start and
 * removal then cost no mount(8) and umount(8) processes.
 */
export interface OverlayMountCalls {
  /** mount -t overlay overlay -o OPTIONS TARGET, run in DIR (absolute). */
  mountOverlay(dir: string, target: string, options: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** umount -l TARGET. */
  detachMount(target: string, opts?: { signal?: AbortSignal }): Promise<void>;
}

/** OverlayMounter that mounts through `calls` when given, else runs mount(8)/umount(8). */
export class LinuxOverlayMounter implements OverlayMounter {
  constructor(private readonly calls?: OverlayMountCalls) {}

  async mount(req: OverlayMountRequest): Promise<void> {
    const data = overlayOptions(req);
    if (this.calls) await this.calls.mountOverlay(resolve(req.cwd), resolve(req.target), data, req.signal ? { signal: req.signal } : {});
    else await run('mount', ['-t', 'overlay', 'overlay', '-o', data, req.target], req.cwd, req.signal);
  }

  async unmount(target: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.calls) await this.calls.detachMount(resolve(target), opts);
    else await run('umount', ['-l', target], undefined, opts.signal);
  }

  async isMounted(target: string): Promise<boolean> {
    let real: string;
    try {
      real = await realpath(target);
    } catch {
      return false;
    }
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of info.split('\n')) {
      const mp = line.split(' ')[4];
      if (mp !== undefined && unescapeMountPath(mp) === real) return true;
    }
    return false;
  }
}
