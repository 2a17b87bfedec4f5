/**
 * What every agent gRPC handler shares: a unary call as a promise-returning
 * function with cancellation, errors leaving as gRPC statuses
 * (toGrpcStatus), and the container id check of requests.
 */
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { status as GrpcCode } from '@grpc/grpc-js';
import { InvalidArgumentError, messageOf, toGrpcStatus, type Logger } from '../../lib/index.js';
import { containerIdProblem } from '../containers/index.js';

/** The gRPC status for `err`; INTERNAL and UNKNOWN ones (our faults, not the caller's) are logged with the method. */
export function failure(log: Logger, method: string, err: unknown): { code: number; details: string } {
  const s = toGrpcStatus(err);
  if (s.code === GrpcCode.INTERNAL || s.code === GrpcCode.UNKNOWN) log.error('agent API call failed', { method, reason: messageOf(err) });
  return s;
}

/** A unary handler: `fn` gets the request and a signal that aborts when the client cancels; a thrown error becomes the call's status. */
export function unary<Req, Res>(log: Logger, method: string, fn: (req: Req, signal: AbortSignal) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    fn(call.request, ac.signal).then(
      (res) => callback(null, res),
      (err: unknown) => {
        const s = failure(log, method, err);
        callback({ code: s.code, details: s.details });
      },
    );
  };
}

/** Refuses a request field that is not a container id (64 hex characters), naming the field. */
export function checkId(id: string, field = 'id'): void {
  const p = containerIdProblem(id);
  if (p) throw new InvalidArgumentError(`${field}: ${p}`, { field });
}
