/**
 * The real Registrar: NodeService.Register over gRPC. The client is created
 * once and reused across retries; close() releases its channel.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { NodeServiceClient, type RegisterNodeResponse } from '../../proto/gen/berth/v1/controller.js';
import type { NodeSpec } from '../../proto/gen/berth/v1/types.js';
import { UnavailableError, connectFailureReason, fromGrpcError, isConnectFailure } from '../../lib/index.js';
import type { Registrar } from './register.js';

function toBerthError(err: ServiceError, address: string): Error {
  const details = err.details ?? err.message;
  if (err.code === 14 && isConnectFailure(details)) {
    return new UnavailableError(`failed to reach the controller at ${address}: ${connectFailureReason(details)}`, { cause: err });
  }
  return fromGrpcError(err, `register with the controller at ${address}`);
}

export interface GrpcRegistrar extends Registrar {
  close(): void;
}

/** A Registrar that calls the controller at `address` (host:port); each call has `timeoutMs`. */
export function grpcRegistrar(address: string, timeoutMs = 5000): GrpcRegistrar {
  const client = new NodeServiceClient(address, credentials.createInsecure());
  return {
    register(node: NodeSpec, options: { signal?: AbortSignal }): Promise<RegisterNodeResponse> {
      return new Promise((resolve, reject) => {
        const call = client.register({ node }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err: ServiceError | null, res: RegisterNodeResponse) => {
          options.signal?.removeEventListener('abort', onAbort);
          if (err) reject(toBerthError(err, address));
          else resolve(res);
        });
        const onAbort = (): void => call.cancel();
        options.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    close: () => client.close(),
  };
}
