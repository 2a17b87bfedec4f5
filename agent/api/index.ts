/** agent/api: the agent's gRPC server. */
export * from './server.js';
