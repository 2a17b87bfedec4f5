/** agent/status: what the agent publishes on NATS (heartbeats, container reports, pull progress). */
export * from './publisher.js';
export * from './reports.js';
