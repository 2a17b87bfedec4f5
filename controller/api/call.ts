/**
 * The bridge between grpc-js handlers and async functions: one AbortSignal per
 * call (fires when the client cancels or the server stops), every error sent
 * through toGrpcStatus (lib/errors.ts, the one mapping), internal errors logged.
 */
import type * as grpc from '@grpc/grpc-js';
import { BerthError, ErrorCode, messageOf, toGrpcStatus, type Logger } from '../../lib/index.js';

export interface CallContext {
  signal: AbortSignal;
  logger: Logger;
}

function statusOf(err: unknown): Partial<grpc.StatusObject> {
  const s = toGrpcStatus(err);
  return { code: s.code, details: s.details };
}

function logFailure(logger: Logger, method: string, err: unknown): void {
  if (err instanceof BerthError && err.code !== ErrorCode.Internal) {
    logger.debug('request failed', { method, code: err.code, error: err.message });
  } else {
    logger.error('request failed', { method, error: messageOf(err), stack: err instanceof Error ? err.stack : undefined });
  }
}

/** Wraps an async unary handler. */
export function unary<Req, Res>(logger: Logger, method: string, fn: (req: Req, ctx: CallContext) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const ctrl = new AbortController();
    call.on('cancelled', () => ctrl.abort());
    fn(call.request, { signal: ctrl.signal, logger }).then(
      (res) => callback(null, res),
      (err: unknown) => {
        logFailure(logger, method, err);
        callback(statusOf(err) as grpc.ServiceError);
      },
    );
  };
}

/** Wraps a server-streaming handler: `fn` writes with `send` and resolves when the stream is done. */
export function serverStream<Req, Res>(
  logger: Logger,
  method: string,
  stopping: AbortSignal,
  fn: (req: Req, send: (msg: Res) => void, ctx: CallContext) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const ctrl = new AbortController();
    const onStop = (): void => ctrl.abort();
    stopping.addEventListener('abort', onStop, { once: true });
    call.on('cancelled', () => ctrl.abort());
    call.on('close', () => ctrl.abort());
    fn(call.request, (msg) => {
      if (!ctrl.signal.aborted) call.write(msg);
    }, { signal: ctrl.signal, logger }).then(
      () => {
        stopping.removeEventListener('abort', onStop);
        if (!call.cancelled) call.end();
      },
      (err: unknown) => {
        stopping.removeEventListener('abort', onStop);
        if (call.cancelled) return;
        logFailure(logger, method, err);
        call.emit('error', statusOf(err));
      },
    );
  };
}
