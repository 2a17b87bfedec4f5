/** The controller's public gRPC API. */
export { startApiServer, MAX_RECEIVE_BYTES, type ApiServer, type ApiServerOptions } from './server.js';
export { checkNodeSpec } from './nodes.js';
export { MAX_NAMES_PER_REQUEST, MAX_LABELS, MAX_MANIFEST_BYTES } from './validate.js';
export * from './volumes.js';
