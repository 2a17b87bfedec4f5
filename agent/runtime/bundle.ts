/**
 * OCI bundle generation: an image config (the `config` object of an OCI
 * image config: Entrypoint, Cmd, Env, WorkingDir, User) plus run options
 * become a config.json next to the rootfs, merged the way Docker does:
 *   - an entrypoint given at run time replaces the image's and drops its Cmd;
 *   - a command given at run time replaces the image's Cmd;
 *   - args = entrypoint ++ cmd; neither -> error;
 *   - env: the image's, then the run options' (same key: the later wins),
 *     PATH defaulted, HOSTNAME set, TERM=xterm with a tty, HOME from the
 *     user's /etc/passwd entry ("/" without one) unless set;
 *   - working dir: run option, image, "/";  user: run option, image, root.
 * The bundle also gets hostname, hosts and resolv.conf files that are
 * bind-mounted over /etc/{hostname,hosts,resolv.conf} in the container.
 */
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { join, relative, isAbsolute } from 'node:path';
import { InvalidArgumentError } from '../../lib/errors.js';
import { DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, SECCOMP_ANNOTATION, type OciSpec } from './oci.js';

export interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface RunOptions {
  command?: string[];
  entrypoint?: string[];
  /** "KEY=value" entries. */
  env?: string[];
  workdir?: string;
  /** "user", "uid", "user:group" or "uid:gid", resolved in the rootfs's /etc/passwd and /etc/group. */
  user?: string;
  hostname?: string;
  tty?: boolean;
  /** Initial terminal size with tty. */
  consoleSize?: { rows: number; cols: number };
  readonlyRootfs?: boolean;
  resources?: { memoryBytes?: number; cpus?: number; cpuShares?: number; pidsLimit?: number };
  /** NOFILE soft/hard; default 1024/min(1048576, host hard). */
  nofile?: { soft: number; hard: number };
  /** Host's NOFILE hard limit, to clamp the default to. */
  hostNofileHard?: number;
  /** nameservers for resolv.conf; default: the host's non-loopback ones. */
  dns?: string[];
  /** resolv.conf search domains (`search` line); default none. */
  dnsSearch?: string[];
  /** Join this network namespace (e.g. one CNI set up) instead of a new, empty one. */
  netnsPath?: string;
  /** Berth's default seccomp filter (default) or none. */
  seccomp?: 'default' | 'unconfined';
  /** Extra /etc/hosts lines: [hostname, address]. */
  extraHosts?: [string, string][];
  annotations?: Record<string, string>;
  /**
   * Host paths bind-mounted into the container (volumes, allowed bind mounts),
   * after the default mounts. The runtime resolves each destination inside the
   * rootfs (symlinks cannot lead out) and creates it when missing.
   */
  mounts?: { source: string; destination: string; readOnly: boolean }[];
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface MergedProcess {
  args: string[];
  env: string[];
  cwd: string;
  user: string;
}

/** Docker's merge of image config and run options. */
export function mergeProcess(image: ImageConfig, options: RunOptions = {}): MergedProcess {
  const entrypoint = options.entrypoint ?? image.Entrypoint ?? [];
  const cmd = options.entrypoint !== undefined ? (options.command ?? []) : (options.command ?? image.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0 || args[0] === '') {
    throw new InvalidArgumentError('command: the image has no Entrypoint or Cmd and none was given', { field: 'command' });
  }
  const env = new Map<string, string>();
  const addEnv = (e: string, field: string): void => {
    const i = e.indexOf('=');
    if (i <= 0) throw new InvalidArgumentError(`${field}: expected "KEY=value", got "${e}"`, { field });
    env.set(e.slice(0, i), e.slice(i + 1));
  };
  (image.Env ?? []).forEach((e, i) => addEnv(e, `image Env[${i}]`));
  (options.env ?? []).forEach((e, i) => addEnv(e, `env[${i}]`));
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  if (options.hostname) env.set('HOSTNAME', options.hostname);
  if (options.tty && !env.has('TERM')) env.set('TERM', 'xterm');
  const cwd = options.workdir || image.WorkingDir || '/';
  if (!cwd.startsWith('/')) throw new InvalidArgumentError(`workdir: expected an absolute path, got "${cwd}"`, { field: 'workdir' });
  return { args, env: [...env].map(([k, v]) => `${k}=${v}`), cwd, user: options.user ?? image.User ?? '' };
}

/** Reads a file of the (hostile) rootfs, refusing anything that resolves outside it. */
async function readInRoot(rootfs: string, path: string): Promise<string | undefined> {
  try {
    const root = await realpath(rootfs);
    const real = await realpath(join(root, path));
    const rel = relative(root, real);
    if (rel.startsWith('..') || isAbsolute(rel)) return undefined;
    return await readFile(real, 'utf8');
  } catch {
    return undefined;
  }
}

/** Resolves a Docker-style user spec against the rootfs's /etc/passwd and /etc/group. */
export async function resolveUser(rootfs: string, spec: string): Promise<{ uid: number; gid: number; additionalGids: number[] }> {
  const { home: _home, ...user } = await lookupUser(rootfs, spec === '' ? '0' : spec);
  return user;
}

/** resolveUser plus the home directory from /etc/passwd (undefined when the user has no entry). */
async function lookupUser(rootfs: string, spec: string): Promise<{ uid: number; gid: number; additionalGids: number[]; home: string | undefined }> {
  const [userPart = '', groupPart] = spec.split(':', 2);
  const passwd = (await readInRoot(rootfs, 'etc/passwd')) ?? '';
  const group = (await readInRoot(rootfs, 'etc/group')) ?? '';
  const pwEntries = passwd.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 4);
  const grEntries = group.split('\n').map((l) => l.split(':')).filter((f) => f.length >= 3);
  let uid: number;
  let gid: number | undefined;
  let name: string | undefined;
  let home: string | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const pw = pwEntries.find((f) => Number(f[2]) === uid);
    if (pw) { gid = Number(pw[3]); name = pw[0]; home = pw[5]; }
  } else {
    const pw = pwEntries.find((f) => f[0] === userPart);
    if (!pw) throw new InvalidArgumentError(`user: no user "${userPart}" in the image's /etc/passwd`, { field: 'user' });
    uid = Number(pw[2]);
    gid = Number(pw[3]);
    name = userPart;
    home = pw[5];
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const gr = grEntries.find((f) => f[0] === groupPart);
      if (!gr) throw new InvalidArgumentError(`user: no group "${groupPart}" in the image's /etc/group`, { field: 'user' });
      gid = Number(gr[2]);
    }
  }
  const additionalGids = name === undefined ? [] : grEntries
    .filter((f) => (f[3] ?? '').split(',').includes(name))
    .map((f) => Number(f[2]))
    .filter((g) => g !== gid);
  if (!Number.isSafeInteger(uid) || uid < 0 || uid > 0xfffffffe) throw new InvalidArgumentError(`user: bad uid in "${spec}"`, { field: 'user' });
  return { uid, gid: gid ?? 0, additionalGids, home: home || undefined };
}

/** This process's NOFILE hard limit (a container cannot get more). */
async function hostNofileHard(): Promise<number> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(text)?.[1];
  return hard === undefined || hard === 'unlimited' ? 1048576 : Number(hard);
}

async function hostNameservers(): Promise<string[]> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  return text.split('\n').map((l) => /^nameserver\s+(\S+)/.exec(l)?.[1]).filter((s): s is string =>
    s !== undefined && !s.startsWith('127.') && s !== '::1');
}

/**
 * Writes `<dir>/config.json` (+ hostname, hosts, resolv.conf) for a rootfs.
 * `rootfs` may be absolute or relative to dir. Returns the spec written.
 */
export async function writeBundle(dir: string, rootfs: string, image: ImageConfig, options: RunOptions = {}): Promise<OciSpec> {
  const merged = mergeProcess(image, options);
  const rootfsAbs = isAbsolute(rootfs) ? rootfs : join(dir, rootfs);
  const { home, ...user } = await lookupUser(rootfsAbs, merged.user === '' ? '0' : merged.user);
  // Docker sets HOME from the user's passwd entry ("/" without one) unless given.
  if (!merged.env.some((e) => e.startsWith('HOME='))) merged.env.push(`HOME=${home ?? '/'}`);
  const hostname = options.hostname ?? 'berth';
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(hostname)) {
    throw new InvalidArgumentError(`hostname: expected letters, digits, "." and "-" (at most 63), got "${hostname}"`, { field: 'hostname' });
  }
  const hard = Math.min(1048576, options.hostNofileHard ?? (await hostNofileHard()));
  const nofile = options.nofile ?? { soft: Math.min(1024, hard), hard };
  const dns = options.dns ?? (await hostNameservers());
  await writeFile(join(dir, 'hostname'), `${hostname}\n`);
  const extra = (options.extraHosts ?? []).map(([name, address], i) => {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(name) || !/^[0-9A-Fa-f:.]+$/.test(address)) {
      throw new InvalidArgumentError(`extraHosts[${i}]: expected a host name and an IP address, got "${name}" "${address}"`, { field: `extraHosts[${i}]` });
    }
    return `${address}\t${name}\n`;
  }).join('');
  await writeFile(join(dir, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n${extra}`);
  const search = (options.dnsSearch ?? []).filter((d) => /^[A-Za-z0-9.-]{1,253}$/.test(d));
  await writeFile(join(dir, 'resolv.conf'), dns.map((d) => `nameserver ${d}\n`).join('') + (search.length > 0 ? `search ${search.join(' ')}\n` : ''));

  const r = options.resources ?? {};
  const period = 100000;
  const spec: OciSpec = {
    ociVersion: '1.0.2',
    process: {
      terminal: options.tty === true,
      ...(options.tty && options.consoleSize ? { consoleSize: { height: options.consoleSize.rows, width: options.consoleSize.cols } } : {}),
      user,
      args: merged.args,
      env: merged.env,
      cwd: merged.cwd,
      capabilities: {
        bounding: DEFAULT_CAPABILITIES, effective: DEFAULT_CAPABILITIES, permitted: DEFAULT_CAPABILITIES,
        inheritable: DEFAULT_CAPABILITIES, ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: nofile.soft, hard: nofile.hard }],
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: options.readonlyRootfs === true },
    hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/etc/hostname', type: 'bind', source: join(dir, 'hostname'), options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      { destination: '/etc/hosts', type: 'bind', source: join(dir, 'hosts'), options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: join(dir, 'resolv.conf'), options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      ...(options.mounts ?? []).map((m) => ({
        destination: m.destination, type: 'bind', source: m.source, options: ['rbind', 'nosuid', 'nodev', ...(m.readOnly ? ['ro'] : [])],
      })),
    ],
    annotations: { [SECCOMP_ANNOTATION]: options.seccomp ?? 'default', ...options.annotations },
    linux: {
      namespaces: [
        { type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' },
        options.netnsPath ? { type: 'network', path: options.netnsPath } : { type: 'network' }, { type: 'cgroup' },
      ],
      resources: {
        ...(r.memoryBytes !== undefined ? { memory: { limit: r.memoryBytes } } : {}),
        ...(r.cpus !== undefined || r.cpuShares !== undefined
          ? { cpu: { ...(r.cpus !== undefined ? { quota: Math.round(r.cpus * period), period } : {}), ...(r.cpuShares !== undefined ? { shares: r.cpuShares } : {}) } }
          : {}),
        ...(r.pidsLimit !== undefined ? { pids: { limit: r.pidsLimit } } : {}),
      },
      maskedPaths: DEFAULT_MASKED_PATHS,
      readonlyPaths: DEFAULT_READONLY_PATHS,
    },
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return spec;
}
