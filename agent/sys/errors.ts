/** Errors of agent/sys. */
import { BerthError, ErrorCode, FailedPreconditionError, InternalError } from '../../lib/errors.js';

/** The helper could not set the container up; `detail` is its message, naming the stage ("mount /proc: ..."). */
export class ContainerSetupError extends BerthError {
  override name = 'ContainerSetupError';
  readonly detail: string;
  constructor(detail: string, options: { cause?: unknown; code?: ErrorCode } = {}) {
    super(options.code ?? ErrorCode.FailedPrecondition, `failed to create container: ${detail}`, options);
    this.detail = detail;
  }
}

/** No shim reads the control FIFO of a state dir (it exited, or never existed). */
export class ShimUnavailableError extends FailedPreconditionError {
  override name = 'ShimUnavailableError';
  readonly stateDir: string;
  constructor(stateDir: string, options: { cause?: unknown } = {}) {
    super(`failed to reach the shim of "${stateDir}": no shim is running for it (the container already started or exited)`, options);
    this.stateDir = stateDir;
  }
}

/** A cgroup file operation failed; `path` is the file. */
export class CgroupError extends InternalError {
  override name = 'CgroupError';
  readonly path: string;
  constructor(message: string, path: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.path = path;
  }
}
