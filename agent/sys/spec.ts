/**
 * The container description handed to berth-helper (agent/sys/native/main.c,
 * "SPEC FORMAT"): already validated and resolved by agent/runtime, so the C
 * side needs no JSON parser. Encoded as NUL-terminated strings on fd 3.
 */
import { InvalidArgumentError } from '../../lib/errors.js';

/** One mount, destination inside the container, flags as MS_* bits. */
export interface InitMount {
  destination: string;
  type: string;
  source: string;
  flags: number;
  data: string;
}

export interface InitCapabilities {
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
}

export interface InitRlimit {
  /** e.g. RLIMIT_NOFILE */
  type: string;
  soft: number;
  hard: number;
}

export interface InitSpec {
  /** Host directory the shim writes init.pid, exit.json, ... into. */
  stateDir: string;
  rootfs: string;
  rootfsReadonly: boolean;
  hostname?: string;
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  args: string[];
  env: string[];
  noNewPrivileges: boolean;
  /** Install Berth's default seccomp filter (berth-helper install_seccomp) right before exec. */
  seccomp?: 'default';
  /** Give the process a pty from the container's devpts (the shim keeps the master). */
  terminal: boolean;
  /** Initial window size of the pty. */
  consoleSize?: { rows: number; cols: number };
  /** Exec at once instead of waiting for `start`. */
  autostart: boolean;
  /** Without a terminal: give the container a stdin pipe fed through the shim's `stdin` socket (else /dev/null). */
  openStdin?: boolean;
  capabilities?: InitCapabilities;
  rlimits: InitRlimit[];
  mounts: InitMount[];
  maskedPaths: string[];
  readonlyPaths: string[];
  /** cgroup.procs files the init joins before it unshares its cgroup namespace. */
  cgroupProcs: string[];
  /** memory.oom_control (v1) or memory.events (v2): read for "oom_kill N" at exit. */
  oomFile?: string;
  /** Namespaces to join instead of creating (path); the rest are new. */
  joinNamespaces: { type: 'net' | 'ipc' | 'uts'; path: string }[];
  /** Container log (shim role only). */
  log?: { path: string; maxBytes: number; maxFiles: number };
}

export const SPEC_MAGIC = 'berth-spec-1';

/** Encodes a spec for the helper; throws InvalidArgumentError for strings the format cannot carry. */
export function encodeInitSpec(spec: InitSpec): Buffer {
  const out: string[] = [SPEC_MAGIC];
  const put = (field: string, ...values: string[]): void => {
    for (const v of values) {
      if (v.includes('\0')) throw new InvalidArgumentError(`${field}: must not contain a NUL character`, { field });
    }
    out.push(...values);
  };
  const int = (field: string, v: number): string => {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new InvalidArgumentError(`${field}: expected a whole number >= 0, got ${v}`, { field });
    }
    return String(v);
  };
  put('stateDir', 'state', spec.stateDir);
  put('rootfs', 'rootfs', spec.rootfs);
  if (spec.rootfsReadonly) put('rootfsReadonly', 'rootfs-readonly');
  if (spec.hostname !== undefined) put('hostname', 'hostname', spec.hostname);
  put('cwd', 'cwd', spec.cwd);
  put('user', 'user', int('uid', spec.uid), int('gid', spec.gid));
  spec.additionalGids.forEach((g, i) => put(`additionalGids[${i}]`, 'group', int(`additionalGids[${i}]`, g)));
  spec.args.forEach((a, i) => put(`args[${i}]`, 'arg', a));
  spec.env.forEach((e, i) => put(`env[${i}]`, 'env', e));
  if (spec.noNewPrivileges) put('noNewPrivileges', 'no-new-privileges');
  if (spec.seccomp) put('seccomp', 'seccomp', spec.seccomp);
  if (spec.terminal) put('terminal', 'terminal');
  if (spec.consoleSize) put('consoleSize', 'winsize', int('consoleSize.rows', spec.consoleSize.rows), int('consoleSize.cols', spec.consoleSize.cols));
  if (spec.autostart) put('autostart', 'autostart');
  if (spec.openStdin) put('openStdin', 'stdin');
  if (spec.capabilities) {
    const c = spec.capabilities;
    put('capabilities', 'caps', ...[c.bounding, c.effective, c.permitted, c.inheritable, c.ambient].map((v) => v.toString(16)));
  }
  spec.rlimits.forEach((r, i) => put(`rlimits[${i}]`, 'rlimit', r.type, int(`rlimits[${i}].soft`, r.soft), int(`rlimits[${i}].hard`, r.hard)));
  spec.mounts.forEach((m, i) =>
    put(`mounts[${i}]`, 'mount', m.destination, m.type, m.source, int(`mounts[${i}].flags`, m.flags), m.data));
  spec.maskedPaths.forEach((p, i) => put(`maskedPaths[${i}]`, 'mask', p));
  spec.readonlyPaths.forEach((p, i) => put(`readonlyPaths[${i}]`, 'readonly', p));
  spec.cgroupProcs.forEach((p, i) => put(`cgroupProcs[${i}]`, 'cgroup', p));
  if (spec.oomFile) put('oomFile', 'oom', spec.oomFile);
  spec.joinNamespaces.forEach((n, i) => put(`joinNamespaces[${i}]`, 'ns', n.type, n.path));
  if (spec.log) put('log', 'log', spec.log.path, int('log.maxBytes', spec.log.maxBytes), int('log.maxFiles', spec.log.maxFiles));
  out.push('end');
  return Buffer.from(out.join('\0') + '\0', 'utf8');
}

/** A process to run inside a running container (the helper's "exec" role). */
export interface ExecSpec {
  /** Host pid of the container's init, whose namespaces are joined. */
  targetPid: number;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  capabilities?: InitCapabilities;
  noNewPrivileges: boolean;
  seccomp?: 'default';
  terminal: boolean;
  consoleSize?: { rows: number; cols: number };
  /** cgroup.procs files of the container. */
  cgroupProcs: string[];
}

/** Encodes an exec spec (same format as InitSpec, with "target"). */
export function encodeExecSpec(spec: ExecSpec): Buffer {
  const init = encodeInitSpec({
    stateDir: '', rootfs: '', rootfsReadonly: false, cwd: spec.cwd, uid: spec.uid, gid: spec.gid,
    additionalGids: spec.additionalGids, args: spec.args, env: spec.env, noNewPrivileges: spec.noNewPrivileges,
    terminal: spec.terminal, autostart: false, rlimits: [], mounts: [], maskedPaths: [], readonlyPaths: [],
    cgroupProcs: spec.cgroupProcs, joinNamespaces: [],
    ...(spec.capabilities ? { capabilities: spec.capabilities } : {}),
    ...(spec.consoleSize ? { consoleSize: spec.consoleSize } : {}),
    ...(spec.seccomp ? { seccomp: spec.seccomp } : {}),
  });
  if (!Number.isSafeInteger(spec.targetPid) || spec.targetPid <= 1) {
    throw new InvalidArgumentError(`targetPid: expected a host pid above 1, got ${spec.targetPid}`, { field: 'targetPid' });
  }
  // Drop the empty state/rootfs records the shim roles need, add the target.
  const parts = init.toString('utf8').split('\0');
  const out: string[] = [SPEC_MAGIC, 'target', String(spec.targetPid)];
  for (let i = 1; i < parts.length - 1; i++) {
    if ((parts[i] === 'state' || parts[i] === 'rootfs') && parts[i + 1] === '') {
      i++;
      continue;
    }
    out.push(parts[i] as string);
  }
  return Buffer.from(out.join('\0') + '\0', 'utf8');
}
