/**
 * Mocha root hooks, loaded for every test run (see .mocharc.json).
 *
 * Before the run: remove test hosts left by runs that crashed, and take a
 * leak snapshot. After the run: stop any process and host set a failed test
 * left registered, then fail the run (an error thrown here is reported by
 * mocha as a failed "after all" hook) when mounts, network namespaces,
 * links, cgroups, nft tables, processes or temp dirs remain that were not
 * there at the start. See leaks.ts for how concurrent runs are told apart.
 */
import type { Context, RootHookObject } from 'mocha';
import { liveHostSets, reapStaleHosts } from './hosts.js';
import { formatLeaks, LeakTracker } from './leaks.js';
import { liveProcesses } from './process.js';

const leakCheck = process.env.BERTH_TEST_LEAKS !== 'off';
const tracker = new LeakTracker();

function warn(text: string): void {
  process.stderr.write(`\n[berth test harness] warning: ${text}\n`);
}

export const mochaHooks: RootHookObject = {
  async beforeAll() {
    try {
      const reaped = await reapStaleHosts();
      if (reaped.length > 0) warn(`removed test hosts left by crashed runs: ${reaped.join(', ')}`);
    } catch (err) {
      warn(`failed to remove test hosts left by crashed runs: ${(err as Error).message}`);
    }
    if (leakCheck) await tracker.start();
  },

  async afterAll(this: Context) {
    this.timeout(120_000);
    const problems: string[] = [];
    const left = liveProcesses();
    if (left.length > 0) warn(`tests left ${left.length} process(es) running; stopping them: ${left.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}`);
    await Promise.all(left.map((p) => p.stop(1000)));
    const hostSets = liveHostSets();
    if (hostSets.length > 0) warn(`tests left ${hostSets.length} test host set(s); cleaning up: ${hostSets.map((h) => h.runId).join(', ')}`);
    for (const h of hostSets) {
      await h.cleanup().catch((err: Error) => problems.push(err.message));
    }
    if (!leakCheck) {
      if (problems.length > 0) throw new Error(`test cleanup failed:\n${problems.join('\n')}`);
      return;
    }
    const report = await tracker.finish();
    if (report.preexisting.length > 0) {
      warn(`present before this run started (not counted; left by an earlier run?):\n${formatLeaks(report.preexisting)}`);
    }
    if (report.uncertain.length > 0) {
      warn(`new since the run started but other test runs or Berth programs were active at the same time, so not counted as leaks (BERTH_TEST_LEAKS=strict counts them):\n${formatLeaks(report.uncertain)}\n  active: ${report.concurrent.slice(0, 5).join('; ')}`);
    }
    if (report.leaked.length > 0 || problems.length > 0) {
      const parts = [];
      if (report.leaked.length > 0) parts.push(`the test run leaked ${report.leaked.length} thing(s) (present at the end, not at the start):\n${formatLeaks(report.leaked)}`);
      if (problems.length > 0) parts.push(`cleanup failed:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
      throw new Error(parts.join('\n'));
    }
  },
};
