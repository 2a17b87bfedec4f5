/**
 * The subset of the OCI runtime spec (config.json) berth-runtime supports,
 * its validation, and its translation into the helper's InitSpec.
 *
 * Anything in a config that the runtime cannot honour (user namespaces,
 * seccomp, joining a pid or mount namespace) is rejected with the field
 * named, never silently ignored. Ignored on purpose (documented in
 * docs/runtime.md): linux.cgroupsPath (Berth chooses cgroup paths),
 * annotations (kept, not interpreted), hooks are rejected.
 */
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { ValidationError, type FieldProblem } from '../../lib/errors.js';
import type { InitCapabilities, InitMount, InitRlimit, InitSpec } from '../sys/index.js';
import type { Resources } from './cgroups.js';

export interface OciUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

export interface OciCapabilities {
  bounding?: string[];
  effective?: string[];
  permitted?: string[];
  inheritable?: string[];
  ambient?: string[];
}

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: OciUser;
  args: string[];
  env?: string[];
  cwd: string;
  capabilities?: OciCapabilities;
  rlimits?: { type: string; soft: number; hard: number }[];
  noNewPrivileges?: boolean;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciNamespace {
  type: string;
  path?: string;
}

export interface OciResources {
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number };
  pids?: { limit?: number };
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: {
    namespaces?: OciNamespace[];
    resources?: OciResources;
    maskedPaths?: string[];
    readonlyPaths?: string[];
    cgroupsPath?: string;
  };
}

/**
 * Annotation that selects Berth's built-in seccomp filter ("default") or none
 * ("unconfined", the same as leaving it out). OCI `linux.seccomp` profiles
 * are not interpreted (rejected).
 */
export const SECCOMP_ANNOTATION = 'io.berth.seccomp';

/** Linux capability names in bit order (CAP_CHOWN = 0 ...). */
export const CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/** Docker's default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** runc's default masked and read-only paths. */
export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** mount(2) flag bits. */
export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, MANDLOCK: 64, DIRSYNC: 128, NOATIME: 1024,
  NODIRATIME: 2048, BIND: 4096, REC: 16384, UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20,
  RELATIME: 1 << 21, STRICTATIME: 1 << 24,
} as const;

const MOUNT_OPTIONS: Record<string, { set?: number; clear?: number }> = {
  ro: { set: MS.RDONLY }, rw: { clear: MS.RDONLY }, nosuid: { set: MS.NOSUID }, suid: { clear: MS.NOSUID },
  nodev: { set: MS.NODEV }, dev: { clear: MS.NODEV }, noexec: { set: MS.NOEXEC }, exec: { clear: MS.NOEXEC },
  sync: { set: MS.SYNCHRONOUS }, async: { clear: MS.SYNCHRONOUS }, dirsync: { set: MS.DIRSYNC },
  mand: { set: MS.MANDLOCK }, nomand: { clear: MS.MANDLOCK }, noatime: { set: MS.NOATIME }, atime: { clear: MS.NOATIME },
  nodiratime: { set: MS.NODIRATIME }, diratime: { clear: MS.NODIRATIME }, relatime: { set: MS.RELATIME },
  norelatime: { clear: MS.RELATIME }, strictatime: { set: MS.STRICTATIME }, nostrictatime: { clear: MS.STRICTATIME },
  bind: { set: MS.BIND }, rbind: { set: MS.BIND | MS.REC },
  private: { set: MS.PRIVATE }, rprivate: { set: MS.PRIVATE | MS.REC }, slave: { set: MS.SLAVE },
  rslave: { set: MS.SLAVE | MS.REC }, shared: { set: MS.SHARED }, rshared: { set: MS.SHARED | MS.REC },
  unbindable: { set: MS.UNBINDABLE }, runbindable: { set: MS.UNBINDABLE | MS.REC },
};

/** Parses mount options into MS_* flags and the data string. */
export function mountFlags(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const m = MOUNT_OPTIONS[o];
    if (m) {
      flags = (flags | (m.set ?? 0)) & ~(m.clear ?? 0);
    } else {
      data.push(o);
    }
  }
  return { flags, data: data.join(',') };
}

export function capabilityMask(names: readonly string[] | undefined, field: string, problems: FieldProblem[]): bigint {
  let mask = 0n;
  (names ?? []).forEach((n, i) => {
    const bit = (CAPABILITIES as readonly string[]).indexOf(n);
    if (bit < 0) problems.push({ path: `${field}[${i}]`, message: `unknown capability "${n}" (expected a name like CAP_CHOWN)` });
    else mask |= 1n << BigInt(bit);
  });
  return mask;
}

/** The InitSpec fields that come from config.json, plus what only the runtime uses (resources, annotations). */
export type ResolvedConfig = Pick<InitSpec,
  'rootfs' | 'rootfsReadonly' | 'hostname' | 'cwd' | 'uid' | 'gid' | 'additionalGids' | 'args' | 'env' |
  'noNewPrivileges' | 'seccomp' | 'terminal' | 'consoleSize' | 'rlimits' | 'mounts' | 'maskedPaths' |
  'readonlyPaths' | 'joinNamespaces'> & {
  capabilities: InitCapabilities;
  resources: Resources;
  annotations: Record<string, string>;
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const describe = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));

/**
 * Validates a parsed config.json and resolves it against its bundle dir.
 * `hardLimits` are this host's hard rlimits (a container cannot exceed them).
 * Throws ValidationError listing every problem.
 */
export function resolveConfig(
  raw: unknown,
  bundleDir: string,
  hardLimits: Record<string, number> = {},
): ResolvedConfig {
  const problems: FieldProblem[] = [];
  const bad = (path: string, message: string): void => { problems.push({ path, message }); };
  if (!isObject(raw)) throw new ValidationError([{ path: '', message: 'expected a JSON object' }], { source: 'config.json' });

  if (typeof raw['ociVersion'] !== 'string' || !/^1\./.test(raw['ociVersion'])) {
    bad('ociVersion', `expected a 1.x version string, got ${describe(raw['ociVersion'])}`);
  }
  for (const unsupported of ['hooks', 'solaris', 'windows', 'vm']) {
    if (raw[unsupported] !== undefined) bad(unsupported, 'not supported by berth-runtime');
  }

  const root = raw['root'];
  let rootfs = '';
  let rootfsReadonly = false;
  if (!isObject(root) || typeof root['path'] !== 'string' || root['path'] === '') {
    bad('root.path', `expected the rootfs path, got ${describe(isObject(root) ? root['path'] : root)}`);
  } else {
    rootfs = resolvePath(bundleDir, root['path']);
    if (root['readonly'] !== undefined && typeof root['readonly'] !== 'boolean') bad('root.readonly', 'expected true or false');
    rootfsReadonly = root['readonly'] === true;
  }

  const proc = raw['process'];
  const args: string[] = [];
  const env: string[] = [];
  let cwd = '/';
  let uid = 0;
  let gid = 0;
  let additionalGids: number[] = [];
  let terminal = false;
  let consoleSize: { rows: number; cols: number } | undefined;
  let noNewPrivileges = false;
  const caps: InitCapabilities = { bounding: 0n, effective: 0n, permitted: 0n, inheritable: 0n, ambient: 0n };
  const rlimits: InitRlimit[] = [];
  if (!isObject(proc)) {
    bad('process', 'expected an object with args, cwd and user');
  } else {
    if (!Array.isArray(proc['args']) || proc['args'].length === 0 || !proc['args'].every((a) => typeof a === 'string')) {
      bad('process.args', `expected a non-empty list of strings, got ${describe(proc['args'])}`);
    } else {
      args.push(...(proc['args'] as string[]));
      if (args[0] === '') bad('process.args[0]', 'expected an executable, got ""');
    }
    if (proc['env'] !== undefined) {
      if (!Array.isArray(proc['env'])) bad('process.env', 'expected a list of "KEY=value" strings');
      else proc['env'].forEach((e, i) => {
        if (typeof e !== 'string' || !/^[^=]+=/.test(e)) bad(`process.env[${i}]`, `expected "KEY=value", got ${describe(e)}`);
        else env.push(e);
      });
    }
    if (typeof proc['cwd'] !== 'string' || !proc['cwd'].startsWith('/')) {
      bad('process.cwd', `expected an absolute path, got ${describe(proc['cwd'])}`);
    } else {
      cwd = proc['cwd'];
    }
    const user = proc['user'];
    if (!isObject(user) || !isUint(user['uid']) || !isUint(user['gid'])) {
      bad('process.user', `expected {"uid": N, "gid": N}, got ${describe(user)}`);
    } else {
      uid = user['uid'];
      gid = user['gid'];
      if (user['additionalGids'] !== undefined) {
        if (!Array.isArray(user['additionalGids']) || !user['additionalGids'].every(isUint)) {
          bad('process.user.additionalGids', 'expected a list of whole numbers');
        } else if (user['additionalGids'].length > 64) {
          bad('process.user.additionalGids', 'expected at most 64 groups');
        } else {
          additionalGids = user['additionalGids'] as number[];
        }
      }
      if (user['username'] !== undefined) bad('process.user.username', 'not supported on Linux');
    }
    if (proc['terminal'] !== undefined && typeof proc['terminal'] !== 'boolean') bad('process.terminal', 'expected true or false');
    terminal = proc['terminal'] === true;
    const cs = proc['consoleSize'];
    if (cs !== undefined) {
      if (!isObject(cs) || !isUint(cs['height']) || !isUint(cs['width']) || cs['height'] > 65535 || cs['width'] > 65535) {
        bad('process.consoleSize', `expected {"height": N, "width": N} up to 65535, got ${describe(cs)}`);
      } else if (cs['height'] > 0 && cs['width'] > 0) {
        consoleSize = { rows: cs['height'], cols: cs['width'] };
      }
    }
    noNewPrivileges = proc['noNewPrivileges'] === true;
    const c = proc['capabilities'];
    if (c !== undefined) {
      if (!isObject(c)) bad('process.capabilities', 'expected an object of capability lists');
      else for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const) {
        const v = c[set];
        if (v !== undefined && (!Array.isArray(v) || !v.every((n) => typeof n === 'string'))) {
          bad(`process.capabilities.${set}`, 'expected a list of capability names');
        } else {
          caps[set] = capabilityMask(v as string[] | undefined, `process.capabilities.${set}`, problems);
        }
      }
      if ((caps.ambient & ~(caps.permitted & caps.inheritable)) !== 0n) {
        bad('process.capabilities.ambient', 'every ambient capability must also be permitted and inheritable');
      }
      if ((caps.effective & ~caps.permitted) !== 0n) {
        bad('process.capabilities.effective', 'every effective capability must also be permitted');
      }
    }
    if (proc['rlimits'] !== undefined) {
      if (!Array.isArray(proc['rlimits'])) bad('process.rlimits', 'expected a list');
      else proc['rlimits'].forEach((r: unknown, i) => {
        const at = `process.rlimits[${i}]`;
        if (!isObject(r) || typeof r['type'] !== 'string' || !isUint(r['soft']) || !isUint(r['hard'])) {
          bad(at, `expected {"type": "RLIMIT_...", "soft": N, "hard": N}, got ${describe(r)}`);
          return;
        }
        const { type, soft, hard } = r as { type: string; soft: number; hard: number };
        if (!/^RLIMIT_(CPU|FSIZE|DATA|STACK|CORE|RSS|NPROC|NOFILE|MEMLOCK|AS|LOCKS|SIGPENDING|MSGQUEUE|NICE|RTPRIO|RTTIME)$/.test(type)) {
          bad(`${at}.type`, `unknown rlimit "${type}"`);
        } else if (soft > hard) {
          bad(at, `soft limit ${soft} is above the hard limit ${hard}`);
        } else if (hardLimits[type] !== undefined && hard > (hardLimits[type] ?? Infinity)) {
          bad(`${at}.hard`, `${type} hard limit ${hard} exceeds this host's hard limit ${hardLimits[type]} (it cannot be raised here)`);
        } else if (rlimits.some((x) => x.type === type)) {
          bad(`${at}.type`, `${type} is listed twice`);
        } else {
          rlimits.push({ type, soft, hard });
        }
      });
    }
  }

  if (raw['hostname'] !== undefined && (typeof raw['hostname'] !== 'string' || !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/.test(raw['hostname']))) {
    bad('hostname', `expected a hostname of letters, digits, "." and "-" (at most 63), got ${describe(raw['hostname'])}`);
  }
  const hostname = typeof raw['hostname'] === 'string' ? raw['hostname'] : undefined;

  const mounts: InitMount[] = [];
  if (raw['mounts'] !== undefined) {
    if (!Array.isArray(raw['mounts'])) bad('mounts', 'expected a list');
    else raw['mounts'].forEach((m: unknown, i) => {
      const at = `mounts[${i}]`;
      if (!isObject(m) || typeof m['destination'] !== 'string' || !m['destination'].startsWith('/')) {
        bad(`${at}.destination`, `expected an absolute path inside the container, got ${describe(isObject(m) ? m['destination'] : m)}`);
        return;
      }
      const options = m['options'] ?? [];
      if (!Array.isArray(options) || !options.every((o) => typeof o === 'string')) {
        bad(`${at}.options`, 'expected a list of strings');
        return;
      }
      const parsed = mountFlags(options as string[]);
      const data = parsed.data;
      let flags = parsed.flags;
      const type = typeof m['type'] === 'string' ? m['type'] : '';
      if (type === 'bind') flags |= MS.BIND;
      let source = typeof m['source'] === 'string' ? m['source'] : '';
      if (flags & MS.BIND) {
        if (source === '') {
          bad(`${at}.source`, 'a bind mount needs a source path');
          return;
        }
        if (!isAbsolute(source)) source = resolvePath(bundleDir, source);
      } else if (type === '') {
        bad(`${at}.type`, 'expected a filesystem type (or a bind mount)');
        return;
      }
      if (m['destination'].split('/').includes('..')) {
        bad(`${at}.destination`, 'must not contain ".."');
        return;
      }
      mounts.push({ destination: m['destination'], type: flags & MS.BIND ? 'bind' : type, source, flags, data });
    });
  }

  const linux = raw['linux'];
  const joinNamespaces: ResolvedConfig['joinNamespaces'] = [];
  const resources: Resources = {};
  let maskedPaths: string[] = [];
  let readonlyPaths: string[] = [];
  if (linux !== undefined && !isObject(linux)) bad('linux', 'expected an object');
  const l = isObject(linux) ? linux : {};
  for (const unsupported of ['uidMappings', 'gidMappings', 'seccomp', 'devices', 'sysctl', 'intelRdt', 'personality', 'timeOffsets']) {
    const v = l[unsupported];
    if (v !== undefined && !(Array.isArray(v) && v.length === 0) && !(isObject(v) && Object.keys(v).length === 0)) {
      bad(`linux.${unsupported}`, 'not supported by berth-runtime');
    }
  }
  const namespaces = l['namespaces'] ?? [];
  if (!Array.isArray(namespaces)) {
    bad('linux.namespaces', 'expected a list');
  } else {
    const seen = new Set<string>();
    namespaces.forEach((n: unknown, i) => {
      const at = `linux.namespaces[${i}]`;
      if (!isObject(n) || typeof n['type'] !== 'string') return bad(at, 'expected {"type": ...}');
      const type = n['type'];
      const path = typeof n['path'] === 'string' ? n['path'] : '';
      seen.add(type);
      if (type === 'user' || type === 'time') return bad(`${at}.type`, `${type} namespaces are not supported by berth-runtime`);
      if (!['pid', 'mount', 'uts', 'ipc', 'network', 'cgroup'].includes(type)) return bad(`${at}.type`, `unknown namespace type "${type}"`);
      if (path !== '') {
        if (type === 'pid' || type === 'mount' || type === 'cgroup') return bad(`${at}.path`, `joining an existing ${type} namespace is not supported`);
        if (!isAbsolute(path)) return bad(`${at}.path`, `expected an absolute path, got "${path}"`);
        joinNamespaces.push({ type: type === 'network' ? 'net' : (type as 'ipc' | 'uts'), path });
      }
      return undefined;
    });
    for (const required of ['pid', 'mount']) {
      if (!seen.has(required)) bad('linux.namespaces', `a ${required} namespace is required (berth-runtime always creates one)`);
    }
    // Not listed = share the runtime's own namespace.
    for (const [oci, kind] of [['network', 'net'], ['ipc', 'ipc'], ['uts', 'uts']] as const) {
      if (!seen.has(oci)) joinNamespaces.push({ type: kind, path: `/proc/self/ns/${kind}` });
    }
    if (!seen.has('uts') && hostname !== undefined) bad('hostname', 'setting a hostname needs a uts namespace');
  }
  const res = l['resources'];
  if (res !== undefined) {
    if (!isObject(res)) bad('linux.resources', 'expected an object');
    else {
      const mem = res['memory'];
      if (isObject(mem) && mem['limit'] !== undefined) {
        if (!Number.isSafeInteger(mem['limit']) || ((mem['limit'] as number) < 4 * 1024 * 1024 && mem['limit'] !== -1)) {
          bad('linux.resources.memory.limit', `expected bytes >= 4194304 (4 MiB) or -1, got ${describe(mem['limit'])}`);
        } else if (mem['limit'] !== -1) resources.memoryBytes = mem['limit'] as number;
      }
      const cpu = res['cpu'];
      if (isObject(cpu)) {
        if (cpu['shares'] !== undefined) {
          if (!isUint(cpu['shares']) || cpu['shares'] < 2 || cpu['shares'] > 262144) bad('linux.resources.cpu.shares', `expected 2..262144, got ${describe(cpu['shares'])}`);
          else resources.cpuShares = cpu['shares'];
        }
        if (cpu['period'] !== undefined) {
          if (!isUint(cpu['period']) || cpu['period'] < 1000 || cpu['period'] > 1000000) bad('linux.resources.cpu.period', `expected 1000..1000000 microseconds, got ${describe(cpu['period'])}`);
          else resources.cpuPeriodUs = cpu['period'];
        }
        if (cpu['quota'] !== undefined) {
          if (!Number.isSafeInteger(cpu['quota']) || ((cpu['quota'] as number) < 1000 && cpu['quota'] !== -1)) bad('linux.resources.cpu.quota', `expected >= 1000 microseconds or -1, got ${describe(cpu['quota'])}`);
          else if (cpu['quota'] !== -1) resources.cpuQuotaUs = cpu['quota'] as number;
        }
      }
      const pids = res['pids'];
      if (isObject(pids) && pids['limit'] !== undefined) {
        if (!Number.isSafeInteger(pids['limit']) || ((pids['limit'] as number) < 1 && pids['limit'] !== -1 && pids['limit'] !== 0)) bad('linux.resources.pids.limit', `expected a whole number >= 1 (or 0/-1 for no limit), got ${describe(pids['limit'])}`);
        else if ((pids['limit'] as number) > 0) resources.pidsMax = pids['limit'] as number;
      }
    }
  }
  const pathList = (key: string): string[] => {
    const v = l[key];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((p) => typeof p === 'string' && p.startsWith('/'))) {
      bad(`linux.${key}`, 'expected a list of absolute paths');
      return [];
    }
    return v as string[];
  };
  maskedPaths = pathList('maskedPaths');
  readonlyPaths = pathList('readonlyPaths');

  const annotations: Record<string, string> = {};
  if (raw['annotations'] !== undefined) {
    if (!isObject(raw['annotations']) || !Object.values(raw['annotations']).every((v) => typeof v === 'string')) {
      bad('annotations', 'expected an object of strings');
    } else Object.assign(annotations, raw['annotations']);
  }

  const seccompAnnotation = annotations[SECCOMP_ANNOTATION];
  if (seccompAnnotation !== undefined && seccompAnnotation !== 'default' && seccompAnnotation !== 'unconfined') {
    bad(`annotations.${SECCOMP_ANNOTATION}`, `expected "default" or "unconfined", got "${seccompAnnotation}"`);
  }
  if (problems.length > 0) throw new ValidationError(problems, { source: 'config.json' });
  return {
    rootfs, rootfsReadonly, ...(hostname !== undefined ? { hostname } : {}), cwd, uid, gid, additionalGids, args, env,
    noNewPrivileges, ...(seccompAnnotation === 'default' ? { seccomp: 'default' as const } : {}),
    terminal, ...(consoleSize ? { consoleSize } : {}), capabilities: caps, rlimits, mounts, maskedPaths, readonlyPaths, joinNamespaces,
    resources, annotations,
  };
}
