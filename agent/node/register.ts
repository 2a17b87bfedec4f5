/**
 * Registration: the agent tells the controller who it is (NodeService.Register)
 * when it starts, and learns how often to heartbeat.
 *
 * Lifecycle: `registerWithRetry` calls `Registrar.register` until it succeeds
 * or the signal aborts. While the controller is unreachable (or answers with a
 * retryable error) it waits with a doubling delay capped at `maxDelayMs`,
 * logging each failed attempt once with its reason. Errors that retrying cannot
 * fix (invalid argument, already exists, permission denied, ...) are thrown.
 */
import type { NodeSpec, NodeResources } from '../../proto/gen/berth/v1/types.js';
import type { RegisterNodeResponse } from '../../proto/gen/berth/v1/controller.js';
import { BerthError, CancelledError, ErrorCode, messageOf, sleep, type Logger } from '../../lib/index.js';
import type { NodeFacts } from './facts.js';

/** The one call registration needs; grpcRegistrar() is the real one. */
export interface Registrar {
  register(node: NodeSpec, options: { signal?: AbortSignal }): Promise<RegisterNodeResponse>;
}

export interface NodeIdentity {
  name: string;
  labels: Record<string, string>;
  /** host:port of the agent's gRPC server as the controller should dial it. */
  address: string;
  agentVersion: string;
}

/** The NodeSpec an agent registers: its identity plus its detected facts. */
export function buildNodeSpec(id: NodeIdentity, facts: NodeFacts): NodeSpec {
  const capacity: NodeResources = { cpuMillis: facts.cpuMillis, memoryBytes: facts.memoryBytes, pids: facts.pids };
  return {
    name: id.name,
    labels: { ...id.labels },
    address: id.address,
    capacity,
    cordoned: false,
    agentVersion: id.agentVersion,
    os: facts.os,
    arch: facts.arch,
    kernel: facts.kernel,
    cgroupVersion: facts.cgroupVersion,
  };
}

export interface RetryOptions {
  logger: Logger;
  signal?: AbortSignal;
  initialDelayMs?: number;
  maxDelayMs?: number;
}

const FATAL: ReadonlySet<string> = new Set([
  ErrorCode.InvalidArgument,
  ErrorCode.AlreadyExists,
  ErrorCode.PermissionDenied,
  ErrorCode.Unauthenticated,
  ErrorCode.Unimplemented,
  ErrorCode.FailedPrecondition,
]);

export async function registerWithRetry(registrar: Registrar, node: NodeSpec, options: RetryOptions): Promise<RegisterNodeResponse> {
  const log = options.logger.child({ component: 'register' });
  const maxDelay = options.maxDelayMs ?? 5000;
  let delay = options.initialDelayMs ?? 250;
  for (let attempt = 1; ; attempt++) {
    if (options.signal?.aborted) throw new CancelledError('registration cancelled');
    try {
      const res = await registrar.register(node, { signal: options.signal });
      log.info('registered with the controller', { node: node.name, attempt, heartbeatIntervalMs: res.heartbeatIntervalMs, clusterId: res.clusterId });
      return res;
    } catch (err) {
      if (options.signal?.aborted) throw new CancelledError('registration cancelled', { cause: err });
      if (err instanceof BerthError && FATAL.has(err.code)) {
        throw new BerthError(err.code, `failed to register node "${node.name}": ${err.message}`, { cause: err });
      }
      log.warn('registration failed; retrying', { node: node.name, attempt, reason: messageOf(err), retryInMs: delay });
      await sleep(delay, options.signal, 'registration cancelled');
      delay = Math.min(delay * 2, maxDelay);
    }
  }
}
