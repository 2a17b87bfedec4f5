/**
 * Mocha root hooks, loaded for every test run (see .mocharc.json): after the
 * whole run, stop any process a failed test left behind.
 */
import type { RootHookObject } from 'mocha';
import { liveProcesses } from './process.js';

export const mochaHooks: RootHookObject = {
  async afterAll() {
    const left = liveProcesses();
    await Promise.all(left.map((p) => p.stop(1000)));
  },
};
