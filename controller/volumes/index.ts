/** controller/volumes: named volumes (records in the store, directories on nodes). See manager.ts. */
export * from './manager.js';
