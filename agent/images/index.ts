export * from './errors.js';
export * from './mediatypes.js';
export * from './manifest.js';
export * from './registry.js';
export * from './records.js';
export * from './pull.js';
export * from './service.js';
export * from './progress.js';
