/** Errors of the agent's container manager. */
import { FailedPreconditionError, NotFoundError, type BerthErrorOptions } from '../../lib/index.js';

export class ContainerUnknownError extends NotFoundError {
  override name = 'ContainerUnknownError';
  constructor(id: string, options: BerthErrorOptions = {}) {
    super('container', id, { ...options, message: `container "${id}" not found on this node` });
  }
}

export class ContainerConflictError extends FailedPreconditionError {
  override name = 'ContainerConflictError';
  readonly containerId: string;
  constructor(id: string, message: string, options: BerthErrorOptions = {}) {
    super(message, options);
    this.containerId = id;
  }
}
