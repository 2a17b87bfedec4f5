import assert from 'node:assert/strict';
import { fromGrpcError, GrpcStatus, NotFoundError, toGrpcStatus, ValidationError, ErrorCode } from '../../lib/index.js';

describe('lib/errors', () => {
  it('maps a BerthError to a gRPC status and back to the same code and message', () => {
    const err = new NotFoundError('workload', 'web');
    const status = toGrpcStatus(err);
    assert.equal(status.code, GrpcStatus.NOT_FOUND);
    const back = fromGrpcError({ code: status.code, details: status.details, message: `5 NOT_FOUND: ${status.details}` });
    assert.equal(back.code, ErrorCode.NotFound);
    assert.equal(back.message, 'workload "web" not found');
  });

  it('maps a plain Error to INTERNAL when it is not a BerthError', () => {
    assert.equal(toGrpcStatus(new Error('boom')).code, GrpcStatus.INTERNAL);
  });

  it('names the document and field path of every problem when validation fails', () => {
    const err = new ValidationError([{ document: 1, path: 'spec.replicas', message: 'expected a whole number from 0 to 10000, got "-2"' }], { source: 'web.yaml' });
    assert.equal(err.message, 'web.yaml: document 2: spec.replicas: expected a whole number from 0 to 10000, got "-2"');
    assert.equal(err.field, 'spec.replicas');
  });

  it('reports an unreachable server as unavailable with the action that failed', () => {
    const err = fromGrpcError({ code: GrpcStatus.UNAVAILABLE, details: 'No connection established' }, 'list workloads');
    assert.equal(err.code, ErrorCode.Unavailable);
    assert.match(err.message, /^failed to list workloads: No connection established$/);
  });
});
