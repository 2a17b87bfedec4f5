/**
 * Container network cost (issue 7): inside one namespace host (no default
 * route, egress guard on the cluster range), the time agent/network takes to
 * give a container its network (netns + CNI loopback ADD + bridge ADD with
 * host-local, address read from the result) and to take it away (DEL +
 * netns delete), and a real busybox `true` container started through the
 * runtime with and without that network.
 *
 * Usage (root): node .build-x/test/bench/network.js [--runs N]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeHosts } from '../harness/index.js';
import { RuntimeFixture } from '../agent/runtime/busybox.js';
import { NodeNetwork } from '../../agent/network/index.js';
import { LinuxNetOps } from '../../agent/sys/index.js';
import { silentLogger } from '../../lib/index.js';
import { ContainerSpec } from '../../proto/gen/berth/v1/types.js';
import { intArg } from './args.js';
import { median } from './stats.js';

async function main(): Promise<void> {
  const runs = intArg('runs', 20);
  const hosts = await makeHosts(1, { guardRanges: ['10.244.0.0/16'] });
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-net-'));
  const fx = await new RuntimeFixture().setup();
  const net = new NodeNetwork({
    ops: new LinuxNetOps({ nodeNetns: `/run/netns/${hosts.hosts[0]!.netns}` }), logger: silentLogger(), stateDir: dir, subnet: '10.244.200.0/24', clusterCidr: '10.244.0.0/16',
  });
  const spec = ContainerSpec.fromJSON({ image: 'busybox' });
  const add: number[] = [];
  const del: number[] = [];
  const withNet: number[] = [];
  const without: number[] = [];
  try {
    await net.start();
    const bundle = await fx.bundle(['true']);
    for (let i = 0; i < runs + 2; i++) {
      const id = `bench${String(i).padStart(4, '0')}`;
      // Without a network: the runtime makes an empty netns.
      let t0 = performance.now();
      await fx.runtime.create(`${id}-plain`, bundle, { start: true });
      await fx.runtime.wait(`${id}-plain`, { timeoutMs: 30_000 });
      const plain = performance.now() - t0;
      await fx.runtime.delete(`${id}-plain`, { force: true });
      // With the cluster network: setup, a bundle that joins it, run, teardown.
      t0 = performance.now();
      const r = await net.setup(id, spec);
      const tAdd = performance.now() - t0;
      const b2 = await fx.bundle(['true'], { netnsPath: r.netnsPath });
      const t1 = performance.now();
      await fx.runtime.create(id, b2, { start: true });
      await fx.runtime.wait(id, { timeoutMs: 30_000 });
      const run = performance.now() - t1;
      await fx.runtime.delete(id, { force: true });
      t0 = performance.now();
      await net.teardown(id);
      const tDel = performance.now() - t0;
      if (i < 2) continue; // warm-up
      add.push(tAdd);
      del.push(tDel);
      withNet.push(tAdd + run);
      without.push(plain);
    }
    const f = (x: number) => `${x.toFixed(1)} ms`;
    process.stdout.write(`runs: ${runs} (after 2 warm-up)\n\n| what | median |\n| --- | --- |\n`);
    process.stdout.write(`| network setup (netns + loopback ADD + bridge ADD) | ${f(median(add))} |\n`);
    process.stdout.write(`| network teardown (bridge DEL + loopback DEL + netns delete) | ${f(median(del))} |\n`);
    process.stdout.write(`| busybox true, runtime only (empty netns) | ${f(median(without))} |\n`);
    process.stdout.write(`| busybox true with the cluster network (setup included) | ${f(median(withNet))} |\n`);
  } finally {
    await fx.cleanup().catch(() => undefined);
    await net.cleanup().catch((e: Error) => process.stderr.write(`network cleanup: ${e.message}\n`));
    await rm(dir, { recursive: true, force: true });
    await hosts.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
