/** agent/api: the agent's gRPC server and its AgentService handlers. */
export * from './batch.js';
export * from './server.js';
export * from './service.js';
export * from './streams.js';
export * from './volumes.js';
