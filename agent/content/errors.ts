/** Errors of the content store; each carries the digest at fault. */
import { BerthError, ErrorCode, InvalidArgumentError, NotFoundError, type BerthErrorOptions } from '../../lib/index.js';

/** The bytes received do not hash to, or are not as long as, the descriptor says. */
export class ContentMismatchError extends BerthError {
  override name = 'ContentMismatchError';
  readonly digest: string;
  constructor(digest: string, message: string, options: BerthErrorOptions = {}) {
    super(ErrorCode.InvalidArgument, message, options);
    this.digest = digest;
  }
}

export class ContentNotFoundError extends NotFoundError {
  override name = 'ContentNotFoundError';
  readonly digest: string;
  constructor(digest: string, options: BerthErrorOptions = {}) {
    super('blob', digest, options);
    this.digest = digest;
  }
}

export class InvalidDigestError extends InvalidArgumentError {
  override name = 'InvalidDigestError';
  readonly digest: string;
  constructor(digest: string) {
    super(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256: followed by 64 lowercase hex characters`, { field: 'digest' });
    this.digest = digest;
  }
}
