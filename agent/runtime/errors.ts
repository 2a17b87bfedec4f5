/** Errors of agent/runtime; each names the container and keeps the cause. */
import { BerthError, ErrorCode, FailedPreconditionError, NotFoundError } from '../../lib/errors.js';

export class ContainerNotFoundError extends NotFoundError {
  override name = 'ContainerNotFoundError';
  constructor(id: string, options: { cause?: unknown } = {}) {
    super('container', id, options);
  }
}

/** The container is not in a state that allows the operation. */
export class ContainerStateError extends FailedPreconditionError {
  override name = 'ContainerStateError';
  readonly containerId: string;
  readonly status: string;
  constructor(containerId: string, status: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.containerId = containerId;
    this.status = status;
  }
}

/** start failed: the process could not be executed. */
export class ContainerStartError extends BerthError {
  override name = 'ContainerStartError';
  readonly containerId: string;
  constructor(containerId: string, detail: string, options: { cause?: unknown } = {}) {
    super(ErrorCode.FailedPrecondition, `failed to start container "${containerId}": ${detail}`, options);
    this.containerId = containerId;
  }
}
