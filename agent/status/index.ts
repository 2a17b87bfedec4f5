/** agent/status: what the agent publishes on NATS (heartbeats for now). */
export * from './publisher.js';
