/** agent/containers: the containers assigned to this node, their lifecycle, restarts and health. See manager.ts. */
export * from './manager.js';
export * from './backoff.js';
export * from './health.js';
export * from './validate.js';
export * from './errors.js';
