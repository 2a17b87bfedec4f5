export * from './errors.js';
export * from './logging.js';
export * from './config.js';
export * from './version.js';
export * from './reference.js';
export * from './quantity.js';
export * from './unreachable.js';
export * from './workload/index.js';
