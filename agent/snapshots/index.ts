export * from './errors.js';
export * from './tar.js';
export * from './apply.js';
export * from './writers.js';
export * from './snapshotter.js';
