/** agent/volumes: the node's named volumes and the bind-mount allow list. See store.ts. */
export * from './store.js';
export * from './errors.js';
