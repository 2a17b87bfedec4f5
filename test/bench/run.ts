/**
 * `npm run bench [-- NAME...]`: runs the benchmark scripts one after another
 * (all of them by default) and passes their output through. Each script
 * measures Berth side by side with a peer in the same run and prints ratios;
 * docs/benchmarks.md records the figures and the command for each.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BENCHES: Record<string, string> = {
  scheduler: 'pure scheduler: placements/s with 1,000 nodes and 10,000 replicas',
  runtime: 'container start: agent path vs berth-runtime run vs crun run vs runc run (root)',
  scale: 'hollow agents: 1,000 nodes, 10,000 replicas: apply-to-all-running and node-loss-to-replaced',
  pull: 'image pull: Berth vs podman pull vs curl + tar -xzf (root, downloads Debian packages once)',
  'cli-run': 'berth run --rm busybox true end to end vs podman run --rm (root, real cluster)',
  autoscale: 'autoscaler: decision latency, cpu reaction time on a real cluster, cold start from zero, timeline SVG (docs/autoscale-timeline.svg)',
  network: 'container start with the cluster network (CNI ADD/DEL included) vs podman run --rm on its default bridge (root, namespace hosts)',
  service: 'requests/s and MB/s through a service virtual IP vs straight to the replica, same wrk client (root, namespace hosts; needs wrk)',
};

const asked = process.argv.slice(2).filter((a) => !a.startsWith('-'));
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write('usage: npm run bench [-- NAME...]\n\n');
  for (const [name, what] of Object.entries(BENCHES)) process.stdout.write(`  ${name.padEnd(10)} ${what}\n`);
  process.exit(0);
}
const unknown = asked.filter((a) => !(a in BENCHES));
if (unknown.length > 0) {
  process.stderr.write(`unknown benchmark ${unknown.map((u) => `"${u}"`).join(', ')}; expected one of ${Object.keys(BENCHES).join(', ')}\n`);
  process.exit(2);
}
let failed = 0;
for (const name of asked.length > 0 ? asked : Object.keys(BENCHES)) {
  process.stdout.write(`\n== ${name}: ${BENCHES[name]}\n`);
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const r = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
