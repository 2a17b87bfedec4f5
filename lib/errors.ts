/**
 * Berth's error vocabulary.
 *
 * Every error that crosses a module boundary is a BerthError with a `code` from
 * a small shared set (containerd's errdefs are the model). Modules subclass it
 * with their own fields (`field`, `nodeId`, `digest`, ...). Exactly one place,
 * `toGrpcStatus`/`fromGrpcError` below, maps codes to gRPC status codes and
 * back, so a NotFound in the controller is a NotFound in the CLI.
 *
 * Messages follow one style: lowercase, "failed to <verb> <thing>: <cause>",
 * values quoted, and they say what was expected.
 */

export const ErrorCode = {
  InvalidArgument: 'invalid_argument',
  NotFound: 'not_found',
  AlreadyExists: 'already_exists',
  FailedPrecondition: 'failed_precondition',
  Conflict: 'conflict',
  Unavailable: 'unavailable',
  Cancelled: 'cancelled',
  DeadlineExceeded: 'deadline_exceeded',
  PermissionDenied: 'permission_denied',
  Unauthenticated: 'unauthenticated',
  ResourceExhausted: 'resource_exhausted',
  Unimplemented: 'unimplemented',
  Internal: 'internal',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface BerthErrorOptions {
  cause?: unknown;
}

/** Base class of every Berth error. `code` says which category it belongs to. */
export class BerthError extends Error {
  override name = 'BerthError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: BerthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
  }
}

/** Input that does not have the expected shape; `field` is the path at fault. */
export class InvalidArgumentError extends BerthError {
  override name = 'InvalidArgumentError';
  readonly field: string | undefined;
  constructor(message: string, options: BerthErrorOptions & { field?: string } = {}) {
    super(ErrorCode.InvalidArgument, message, options);
    this.field = options.field;
  }
}

export class NotFoundError extends BerthError {
  override name = 'NotFoundError';
  readonly kind: string;
  readonly key: string;
  constructor(kind: string, key: string, options: BerthErrorOptions & { message?: string } = {}) {
    super(ErrorCode.NotFound, options.message ?? `${kind} "${key}" not found`, options);
    this.kind = kind;
    this.key = key;
  }
}

export class AlreadyExistsError extends BerthError {
  override name = 'AlreadyExistsError';
  readonly kind: string;
  readonly key: string;
  constructor(kind: string, key: string, options: BerthErrorOptions & { message?: string } = {}) {
    super(ErrorCode.AlreadyExists, options.message ?? `${kind} "${key}" already exists`, options);
    this.kind = kind;
    this.key = key;
  }
}

export class FailedPreconditionError extends BerthError {
  override name = 'FailedPreconditionError';
  constructor(message: string, options: BerthErrorOptions = {}) {
    super(ErrorCode.FailedPrecondition, message, options);
  }
}

export class UnavailableError extends BerthError {
  override name = 'UnavailableError';
  constructor(message: string, options: BerthErrorOptions = {}) {
    super(ErrorCode.Unavailable, message, options);
  }
}

export class CancelledError extends BerthError {
  override name = 'CancelledError';
  constructor(message = 'operation cancelled', options: BerthErrorOptions = {}) {
    super(ErrorCode.Cancelled, message, options);
  }
}

export class InternalError extends BerthError {
  override name = 'InternalError';
  constructor(message: string, options: BerthErrorOptions = {}) {
    super(ErrorCode.Internal, message, options);
  }
}

/** One problem found while validating a document; many are reported together. */
export interface FieldProblem {
  /** 0-based index of the YAML document, when the input had several. */
  document?: number;
  /** Dotted path such as `spec.resources.memory` or `spec.ports[1].container`. */
  path: string;
  message: string;
}

/** Validation found one or more problems; nothing was applied. */
export class ValidationError extends InvalidArgumentError {
  override name = 'ValidationError';
  readonly problems: readonly FieldProblem[];
  constructor(problems: readonly FieldProblem[], options: BerthErrorOptions & { source?: string } = {}) {
    const where = options.source ? `${options.source}: ` : '';
    const lines = problems.map((p) => `${where}${p.document !== undefined ? `document ${p.document + 1}: ` : ''}${p.path}: ${p.message}`);
    super(lines.join('\n'), { ...options, field: problems[0]?.path });
    this.problems = problems;
  }
}

// gRPC status codes (from the gRPC spec); kept here so lib/ does not import grpc-js.
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const toGrpc: Record<ErrorCode, number> = {
  [ErrorCode.InvalidArgument]: GrpcStatus.INVALID_ARGUMENT,
  [ErrorCode.NotFound]: GrpcStatus.NOT_FOUND,
  [ErrorCode.AlreadyExists]: GrpcStatus.ALREADY_EXISTS,
  [ErrorCode.FailedPrecondition]: GrpcStatus.FAILED_PRECONDITION,
  [ErrorCode.Conflict]: GrpcStatus.ABORTED,
  [ErrorCode.Unavailable]: GrpcStatus.UNAVAILABLE,
  [ErrorCode.Cancelled]: GrpcStatus.CANCELLED,
  [ErrorCode.DeadlineExceeded]: GrpcStatus.DEADLINE_EXCEEDED,
  [ErrorCode.PermissionDenied]: GrpcStatus.PERMISSION_DENIED,
  [ErrorCode.Unauthenticated]: GrpcStatus.UNAUTHENTICATED,
  [ErrorCode.ResourceExhausted]: GrpcStatus.RESOURCE_EXHAUSTED,
  [ErrorCode.Unimplemented]: GrpcStatus.UNIMPLEMENTED,
  [ErrorCode.Internal]: GrpcStatus.INTERNAL,
};

const fromGrpc = new Map<number, ErrorCode>(
  Object.entries(toGrpc).map(([code, status]) => [status, code as ErrorCode]),
);

/** The gRPC status object for an error: BerthErrors keep their code and message. */
export function toGrpcStatus(err: unknown): { code: number; details: string } {
  if (err instanceof BerthError) return { code: toGrpc[err.code], details: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: GrpcStatus.INTERNAL, details: `internal error: ${message}` };
}

/** Shape of an error thrown by a grpc-js client call. */
interface GrpcLikeError {
  code?: unknown;
  details?: unknown;
  message?: unknown;
}

/**
 * Turns an error from a gRPC client call back into a BerthError with the same
 * category and the server's message (without grpc-js's "3 INVALID_ARGUMENT:" prefix).
 */
export function fromGrpcError(err: unknown, what = 'call the server'): BerthError {
  if (err instanceof BerthError) return err;
  const e = (err ?? {}) as GrpcLikeError;
  const status = typeof e.code === 'number' ? e.code : GrpcStatus.UNKNOWN;
  const details = typeof e.details === 'string' && e.details !== '' ? e.details : typeof e.message === 'string' ? e.message : String(err);
  if (status === GrpcStatus.UNAVAILABLE) {
    return new UnavailableError(`failed to ${what}: ${details}`, { cause: err });
  }
  if (status === GrpcStatus.DEADLINE_EXCEEDED) {
    return new BerthError(ErrorCode.DeadlineExceeded, `failed to ${what}: deadline exceeded`, { cause: err });
  }
  const code = fromGrpc.get(status) ?? ErrorCode.Internal;
  return new BerthError(code, details, { cause: err });
}

/** True when `err` is a BerthError of the given code. */
export function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof BerthError && err.code === code;
}

/** The message of any thrown value, for logs and wrapped causes. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
