/**
 * Mocha root hooks, loaded for every test run (see .mocharc.json).
 */
import type { RootHookObject } from 'mocha';

export const mochaHooks: RootHookObject = {};
