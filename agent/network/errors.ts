/** Errors of agent/network. */
import { AlreadyExistsError, FailedPreconditionError, InternalError } from '../../lib/index.js';

/** A host port (with protocol and host address) is already published by another container on this node. */
export class PortInUseError extends AlreadyExistsError {
  override name = 'PortInUseError';
  readonly port: number;
  readonly protocol: string;
  readonly owner: string;
  constructor(field: string, port: number, protocol: string, owner: string) {
    super('published port', `${port}/${protocol}`, {
      message: `${field}: host port ${port}/${protocol} is already published on this node by container "${owner}"; choose another host port`,
    });
    this.port = port;
    this.protocol = protocol;
    this.owner = owner;
  }
}

/** The node has no container subnet (the controller allocated none), so "cluster" networking is unavailable. */
export class NoSubnetError extends FailedPreconditionError {
  override name = 'NoSubnetError';
  constructor() {
    super('failed to set up the container network: this node has no container subnet (the controller allocated none; is cluster networking enabled on the agent?)');
  }
}

/** Setting up or tearing down a container's network failed; `containerId` names it. */
export class ContainerNetworkError extends InternalError {
  override name = 'ContainerNetworkError';
  readonly containerId: string;
  constructor(containerId: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.containerId = containerId;
  }
}
