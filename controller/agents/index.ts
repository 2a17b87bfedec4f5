/** The controller's gRPC clients to agents (the only place in controller/ that dials one). */
export { AgentPool, AgentCallError, type AgentClient, type AgentDialer, type AgentPoolOptions, type RunOutcome } from './pool.js';
export { AgentStreamPool, type AgentStream, type AgentStreamDialer, type AgentStreamMethod } from './streams.js';
export { AgentVolumePool, type AgentVolumeClient, type AgentVolumeDialer } from './volumes.js';
