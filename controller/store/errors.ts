/** Errors of the desired-state store. */
import { BerthError, ErrorCode, UnavailableError, type BerthErrorOptions } from '../../lib/index.js';

/** Optimistic concurrency gave up: other writers kept changing the same keys. */
export class ConflictError extends BerthError {
  override name = 'ConflictError';
  readonly keys: readonly string[];
  constructor(message: string, options: BerthErrorOptions & { keys?: readonly string[] } = {}) {
    super(ErrorCode.Conflict, message, options);
    this.keys = options.keys ?? [];
  }
}

/** etcd could not be reached (connection refused, timeout, no leader). */
export class EtcdUnavailableError extends UnavailableError {
  override name = 'EtcdUnavailableError';
  readonly endpoints: readonly string[];
  constructor(endpoints: readonly string[], options: BerthErrorOptions & { detail?: string } = {}) {
    super(`failed to reach etcd at ${endpoints.map((e) => `"${e}"`).join(', ')}${options.detail ? `: ${options.detail}` : ''}`, options);
    this.endpoints = endpoints;
  }
}
