/** Errors of layer unpacking and snapshots. */
import { BerthError, ErrorCode, NotFoundError, type BerthErrorOptions } from '../../lib/index.js';

/**
 * A layer was refused: its tar stream is malformed or hostile, or it is larger
 * than allowed. `entry` is the tar entry at fault when there is one.
 */
export class LayerRejectedError extends BerthError {
  override name = 'LayerRejectedError';
  readonly image: string | undefined;
  readonly digest: string | undefined;
  readonly entry: string | undefined;
  readonly problem: string;
  constructor(
    problem: string,
    where: { image?: string; digest?: string; entry?: string },
    options: BerthErrorOptions & { code?: typeof ErrorCode.InvalidArgument | typeof ErrorCode.ResourceExhausted } = {},
  ) {
    const layer = where.digest !== undefined ? ` "${where.digest}"` : '';
    const image = where.image !== undefined ? ` of image "${where.image}"` : '';
    const entry = where.entry !== undefined ? `entry ${JSON.stringify(where.entry)}: ` : '';
    super(options.code ?? ErrorCode.InvalidArgument, `failed to unpack layer${layer}${image}: ${entry}${problem}`, options);
    this.image = where.image;
    this.digest = where.digest;
    this.entry = where.entry;
    this.problem = problem;
  }
}

export class SnapshotNotFoundError extends NotFoundError {
  override name = 'SnapshotNotFoundError';
  constructor(kind: 'snapshot' | 'container snapshot', key: string) {
    super(kind, key);
  }
}

export class SnapshotError extends BerthError {
  override name = 'SnapshotError';
  readonly key: string;
  constructor(key: string, message: string, options: BerthErrorOptions = {}) {
    super(ErrorCode.Internal, message, options);
    this.key = key;
  }
}
