/**
 * agent/node: facts about this machine and the node's registration with the
 * controller. See facts.ts and register.ts for the vocabulary.
 */
export * from './facts.js';
export * from './register.js';
export * from './registrar.js';
