/**
 * Removes what an agent process left on the machine: its runtime containers
 * (processes, cgroups, state; only those whose `io.berth.agent.root`
 * annotation names `dataRoot`, so other agents sharing the runtime root are
 * untouched) and its container rootfs mounts. For tests that start `berth
 * agent` processes: containers outlive the agent by design, so stopping the
 * agent is not enough. Call it after the agent stopped and before the data
 * root is deleted.
 */
import { join } from 'node:path';
import { OWNER_ANNOTATION } from '../../../agent/containers/index.js';
import { detectCgroups, Runtime } from '../../../agent/runtime/index.js';
import { OverlaySnapshotter } from '../../../agent/snapshots/index.js';
import { LinuxOverlayMounter } from '../../../agent/sys/index.js';
import { LinuxSys } from '../../../agent/sys/linux.js';

/** `runtimeRoot` is the agent's --runtime-root (default /run/berth). */
export async function cleanupAgentContainers(dataRoot: string, runtimeRoot = '/run/berth'): Promise<void> {
  const sys = new LinuxSys();
  try {
    const runtime = new Runtime({ sys, cgroups: await detectCgroups(sys), root: join(runtimeRoot, 'runtime') });
    for (const c of await runtime.list()) {
      if (c.annotations[OWNER_ANNOTATION] === dataRoot) await runtime.delete(c.id, { force: true });
    }
    const snaps = new OverlaySnapshotter({ root: dataRoot, mounter: new LinuxOverlayMounter() });
    for (const s of await snaps.listContainers()) await snaps.removeContainer(s.id);
  } finally {
    sys.close();
  }
}
