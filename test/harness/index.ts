export * from './process.js';
export * from './services.js';
export * from './exec.js';
export * from './images.js';
export * from './registry-images.js';
export * from './hosts.js';
export * from './leaks.js';
