export * from './process.js';
export * from './services.js';
