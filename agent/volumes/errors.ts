/** Errors of the agent's volumes and bind mounts. */
import { BerthError, ErrorCode, FailedPreconditionError, type BerthErrorOptions } from '../../lib/index.js';

/** A bind mount source outside the agent's --allow-bind directories. */
export class BindNotAllowedError extends BerthError {
  override name = 'BindNotAllowedError';
  readonly path: string;
  readonly allowed: readonly string[];
  constructor(message: string, options: BerthErrorOptions & { path: string; allowed: readonly string[] }) {
    super(ErrorCode.PermissionDenied, message, options);
    this.path = options.path;
    this.allowed = options.allowed;
  }
}

/** A volume that containers on this node still mount. */
export class VolumeInUseError extends FailedPreconditionError {
  override name = 'VolumeInUseError';
  readonly volume: string;
  readonly containers: readonly string[];
  constructor(volume: string, containers: readonly string[], options: BerthErrorOptions = {}) {
    super(`failed to remove volume "${volume}": it is in use by ${containers.length === 1 ? 'container' : 'containers'} ${containers.map((c) => `"${c}"`).join(', ')}; expected a volume no container uses (remove those containers first)`, options);
    this.volume = volume;
    this.containers = containers;
  }
}
