/**
 * Validation of RunContainerRequest: every field of a request from the wire
 * is checked before anything is created (requests are hostile). All problems
 * are reported together as a ValidationError naming each field.
 */
import { MAX_DRAIN_SECONDS, envNameProblem, labelKeyProblem, labelValueProblem, mountProblems, parseImageReference, ValidationError, messageOf, type FieldProblem } from '../../lib/index.js';
import type { RunContainerRequest } from '../../proto/gen/berth/v1/agent.js';
import { parseIpv4 } from '../../lib/network.js';
import type { ContainerSpec } from '../../proto/gen/berth/v1/types.js';
import { RESTART_POLICIES } from './backoff.js';

/** Container ids: what the controller chooses (64 hex in practice), kept to 64 characters of a safe alphabet. */
export const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,62})$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$/;
const MAX_ARGS = 1024;
const MAX_ARG_BYTES = 128 * 1024;
const MAX_ENV = 1024;
const MAX_LABELS = 256;

function q(v: string): string {
  return JSON.stringify(v.length > 100 ? `${v.slice(0, 100)}...` : v);
}

export function containerIdProblem(id: string): string | undefined {
  if (CONTAINER_ID.test(id)) return undefined;
  return `expected 1-64 letters, digits, "_" or "-" starting with a letter or digit, got ${q(id)}`;
}

function checkArgs(problems: FieldProblem[], path: string, args: string[]): void {
  if (args.length > MAX_ARGS) problems.push({ path, message: `expected at most ${MAX_ARGS} arguments, got ${args.length}` });
  let total = 0;
  args.forEach((a, i) => {
    total += Buffer.byteLength(a);
    if (a.includes('\0')) problems.push({ path: `${path}[${i}]`, message: 'expected a string without NUL characters' });
  });
  if (total > MAX_ARG_BYTES) problems.push({ path, message: `expected at most ${MAX_ARG_BYTES} bytes in total, got ${total}` });
}

function checkPort(problems: FieldProblem[], path: string, port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push({ path, message: `expected a port from 1 to 65535, got ${port}` });
}

/** Checks a RunContainerRequest; throws ValidationError listing every problem. */
export function validateRunRequest(req: RunContainerRequest, opts: { defaultRegistry?: string } = {}): asserts req is RunContainerRequest & { spec: ContainerSpec } {
  const problems: FieldProblem[] = [];
  const idProblem = containerIdProblem(req.id);
  if (idProblem) problems.push({ path: 'id', message: idProblem });
  if (req.name !== '' && !NAME.test(req.name)) problems.push({ path: 'name', message: `expected up to 253 letters, digits, "_", "." or "-", got ${q(req.name)}` });
  if (req.workload !== '' && !NAME.test(req.workload)) problems.push({ path: 'workload', message: `expected a workload name, got ${q(req.workload)}` });
  if (req.revision < 0) problems.push({ path: 'revision', message: `expected a revision of 0 or more, got ${req.revision}` });
  const spec = req.spec;
  if (!spec) {
    problems.push({ path: 'spec', message: 'expected a container spec' });
    throw new ValidationError(problems);
  }
  if (spec.image === '') problems.push({ path: 'spec.image', message: 'expected an image reference such as "busybox" or "registry.example.com/team/web:1.0"' });
  else {
    try {
      parseImageReference(spec.image, { field: 'spec.image', defaultRegistry: opts.defaultRegistry });
    } catch (err) {
      problems.push({ path: 'spec.image', message: messageOf(err) });
    }
  }
  checkArgs(problems, 'spec.entrypoint', spec.entrypoint);
  checkArgs(problems, 'spec.command', spec.command);
  const envKeys = Object.keys(spec.env);
  if (envKeys.length > MAX_ENV) problems.push({ path: 'spec.env', message: `expected at most ${MAX_ENV} variables, got ${envKeys.length}` });
  for (const k of envKeys) {
    const p = envNameProblem(k);
    if (p) problems.push({ path: `spec.env.${k.slice(0, 64)}`, message: p });
    else if ((spec.env[k] ?? '').includes('\0')) problems.push({ path: `spec.env.${k}`, message: 'expected a value without NUL characters' });
  }
  if (spec.workingDir !== '' && (!spec.workingDir.startsWith('/') || spec.workingDir.includes('\0') || spec.workingDir.length > 4096)) {
    problems.push({ path: 'spec.working_dir', message: `expected an absolute path, got ${q(spec.workingDir)}` });
  }
  if (spec.user !== '' && !USER.test(spec.user)) problems.push({ path: 'spec.user', message: `expected "user", "uid", "user:group" or "uid:gid", got ${q(spec.user)}` });
  if (spec.hostname !== '' && !HOSTNAME.test(spec.hostname)) problems.push({ path: 'spec.hostname', message: `expected letters, digits, "." and "-" (at most 63), got ${q(spec.hostname)}` });
  const r = spec.resources;
  if (r) {
    if (r.cpuMillis < 0 || r.cpuMillis > 1_000_000) problems.push({ path: 'spec.resources.cpu_millis', message: `expected 0 (unset) to 1000000, got ${r.cpuMillis}` });
    if (r.memoryBytes < 0 || (r.memoryBytes > 0 && r.memoryBytes < 4 * 1024 * 1024)) problems.push({ path: 'spec.resources.memory_bytes', message: `expected 0 (unset) or at least 4 MiB, got ${r.memoryBytes}` });
    if (r.pids < 0 || r.pids > 4_194_304) problems.push({ path: 'spec.resources.pids', message: `expected 0 (unset) to 4194304, got ${r.pids}` });
  }
  if (spec.restart) {
    const p = spec.restart.policy;
    if (p !== '' && !(RESTART_POLICIES as readonly string[]).includes(p)) problems.push({ path: 'spec.restart.policy', message: `expected one of ${RESTART_POLICIES.map((x) => `"${x}"`).join(', ')}, got ${q(p)}` });
    if (spec.restart.backoffCapSeconds > 86_400) problems.push({ path: 'spec.restart.backoff_cap_seconds', message: `expected at most 86400, got ${spec.restart.backoffCapSeconds}` });
  }
  const h = spec.health;
  if (h) {
    const kinds = [h.http ? 'http' : '', h.tcp ? 'tcp' : '', h.exec.length > 0 ? 'exec' : ''].filter((k) => k !== '');
    if (kinds.length !== 1) problems.push({ path: 'spec.health', message: `expected exactly one of http, tcp, exec, got ${kinds.length === 0 ? 'none' : kinds.join(', ')}` });
    if (h.http) {
      checkPort(problems, 'spec.health.http.port', h.http.port);
      if (h.http.path !== '' && (!h.http.path.startsWith('/') || /[\s\0]/.test(h.http.path) || h.http.path.length > 2048)) {
        problems.push({ path: 'spec.health.http.path', message: `expected a path starting with "/" without spaces, got ${q(h.http.path)}` });
      }
    }
    if (h.tcp) checkPort(problems, 'spec.health.tcp.port', h.tcp.port);
    checkArgs(problems, 'spec.health.exec', h.exec);
    if (h.exec.length > 0 && h.exec[0] === '') problems.push({ path: 'spec.health.exec[0]', message: 'expected a command' });
    if (h.intervalSeconds > 86_400) problems.push({ path: 'spec.health.interval_seconds', message: `expected at most 86400, got ${h.intervalSeconds}` });
    if (h.timeoutSeconds > 3600) problems.push({ path: 'spec.health.timeout_seconds', message: `expected at most 3600, got ${h.timeoutSeconds}` });
    if (h.failureThreshold > 1000) problems.push({ path: 'spec.health.failure_threshold', message: `expected at most 1000, got ${h.failureThreshold}` });
    if (h.startPeriodSeconds > 86_400) problems.push({ path: 'spec.health.start_period_seconds', message: `expected at most 86400, got ${h.startPeriodSeconds}` });
  }
  spec.ports.forEach((p, i) => {
    checkPort(problems, `spec.ports[${i}].container`, p.container);
    if (p.publish !== 0) checkPort(problems, `spec.ports[${i}].publish`, p.publish);
    if (p.hostIp !== undefined && p.hostIp !== '' && parseIpv4(p.hostIp) === undefined) problems.push({ path: `spec.ports[${i}].host_ip`, message: `expected an IPv4 address, got ${q(p.hostIp)}` });
    if (p.protocol !== '' && p.protocol !== 'tcp' && p.protocol !== 'udp') problems.push({ path: `spec.ports[${i}].protocol`, message: `expected "tcp" or "udp", got ${q(p.protocol)}` });
  });
  problems.push(...mountProblems(spec.mounts));
  if (spec.network !== undefined && !['', 'cluster', 'host', 'none'].includes(spec.network)) problems.push({ path: 'spec.network', message: `expected "cluster", "host" or "none", got ${q(spec.network)}` });
  if (spec.drainSeconds !== undefined && (!Number.isInteger(spec.drainSeconds) || spec.drainSeconds < 0 || spec.drainSeconds > MAX_DRAIN_SECONDS)) {
    problems.push({ path: 'spec.drain_seconds', message: `expected a whole number of seconds from 0 to ${MAX_DRAIN_SECONDS}, got ${spec.drainSeconds}` });
  }
  const labelKeys = Object.keys(spec.labels);
  if (labelKeys.length > MAX_LABELS) problems.push({ path: 'spec.labels', message: `expected at most ${MAX_LABELS} labels, got ${labelKeys.length}` });
  for (const k of labelKeys) {
    const p = labelKeyProblem(k) ?? labelValueProblem(spec.labels[k] ?? '');
    if (p) problems.push({ path: `spec.labels.${k.slice(0, 64)}`, message: p });
  }
  if (problems.length > 0) throw new ValidationError(problems);
}
