/** Errors of registry access, manifests and pulls. */
import { BerthError, ErrorCode, type BerthErrorOptions } from '../../lib/index.js';

/** A registry answered with an error or could not be reached. */
export class RegistryError extends BerthError {
  override name = 'RegistryError';
  readonly registry: string;
  readonly status: number | undefined;
  constructor(registry: string, code: ErrorCode, message: string, options: BerthErrorOptions & { status?: number } = {}) {
    super(code, message, options);
    this.registry = registry;
    this.status = options.status;
  }
}

/** A manifest, index or config that cannot be used (too large, unknown type, bad JSON, wrong digest). */
export class ManifestError extends BerthError {
  override name = 'ManifestError';
  readonly image: string;
  readonly digest: string | undefined;
  constructor(image: string, message: string, options: BerthErrorOptions & { digest?: string; code?: ErrorCode } = {}) {
    super(options.code ?? ErrorCode.InvalidArgument, message, options);
    this.image = image;
    this.digest = options.digest;
  }
}

/** A pull failed; wraps the cause with the image and, when known, the layer digest. */
export class PullError extends BerthError {
  override name = 'PullError';
  readonly image: string;
  readonly digest: string | undefined;
  constructor(image: string, code: ErrorCode, message: string, options: BerthErrorOptions & { digest?: string } = {}) {
    super(code, message, options);
    this.image = image;
    this.digest = options.digest;
  }
}
