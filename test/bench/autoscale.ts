/**
 * Autoscaler benchmark (issue 8):
 *   1. decision latency: the pure decide() alone, and one Autoscaler pass
 *      over 100 autoscaled workloads with an in-memory store;
 *   2. reaction time on a real cluster (etcd, NATS, controller, one agent,
 *      real containers): a cpu-autoscaled workload whose replicas turn busy
 *      at a known moment; the time from that load onset to the first added
 *      replica running (and so taking its share: a cpu workload has no
 *      traffic to route), then the scale-down after the load stops;
 *   3. a timeline of load (the replicas' cpu as the agents report it on
 *      NATS) and replicas, written as an SVG next to docs/benchmarks.md.
 *   4. cold start from zero: two `--network cni` agents in namespace hosts
 *      (no default route, egress guard); an httpd workload with
 *      `autoscale: { min: 0, scaleToZero }` pinned to node-0 (image already
 *      pulled there); each round waits until it is at zero and node-1's
 *      service table sends its address to the hold listener, then times one
 *      HTTP request from node-1 to the service address (curl in node-1's
 *      namespace, with a route to the service range over the bridge: held
 *      by node-1's agent, a replica started on node-0, the
 *      answer forwarded). Median of --cold N rounds (default 5).
 *
 *   npm run build && node dist/test/bench/autoscale.js [--svg docs/autoscale-timeline.svg] [--cold N] [--no-cluster] [--only-cold]
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { connect } from 'nats';
import { silentLogger } from '../../lib/logging.js';
import { Autoscaler, EMPTY_HISTORY, LoadWindow, decide, type AutoscaledWorkload, type AutoscalePolicy } from '../../controller/autoscale/index.js';
import { NodeMetrics } from '../../proto/gen/berth/v1/metrics.js';
import { makeHosts, runIn, startProcess, startRegistryWithImages, tailLog, tryRunIn, waitFor } from '../harness/index.js';
import { startCluster } from '../cli/cluster.js';
import { BERTH_JS, cleanEnv } from '../cli/helpers.js';
import { median } from './stats.js';

const POLICY: AutoscalePolicy = {
  min: 1, max: 20, metric: 'requests', target: 200, tolerance: 0.1,
  scaleUp: { stabilizationSeconds: 0, maxStepPercent: 100, maxStepReplicas: 4, periodSeconds: 5 },
  scaleDown: { stabilizationSeconds: 60, maxStepPercent: 50, maxStepReplicas: 0, periodSeconds: 15 },
};

async function decisionLatency(): Promise<void> {
  // 60 s of one-per-second recommendations in the history, as a busy workload has.
  let history = EMPTY_HISTORY;
  const t0 = 1_800_000_000_000;
  for (let i = 0; i < 60; i++) history = decide('web', POLICY, { nowMs: t0 + i * 1000, current: 5, ready: 5, starting: 0, total: 900 + (i % 7) * 30, lastActiveMs: t0 }, history).history;
  const n = 100_000;
  const start = performance.now();
  for (let i = 0; i < n; i++) decide('web', POLICY, { nowMs: t0 + 60_000, current: 5, ready: 5, starting: 0, total: 1000 + (i % 50), lastActiveMs: t0 }, history);
  const perDecision = ((performance.now() - start) * 1000) / n;

  const workloads: AutoscaledWorkload[] = Array.from({ length: 100 }, (_, i) => ({ name: `w${i}`, replicas: 3, policy: POLICY }));
  const window = new LoadWindow({ sinceMs: 0 });
  const a = new Autoscaler({
    target: { listAutoscaled: async () => workloads, setReplicas: async () => true },
    events: { scaled: async () => undefined },
    window, logger: silentLogger(), clock: () => Date.now(),
  });
  const passes: number[] = [];
  for (let p = 0; p < 50; p++) {
    const now = Date.now();
    for (const w of workloads) for (let r = 0; r < 3; r++) window.add({ workload: w.name, replica: `${w.name}-${r}`, atMs: now, ready: true, cpuPercent: 0, requestsPerSecond: 200, connections: 0 });
    const s = performance.now();
    await a.tick();
    passes.push(performance.now() - s);
  }
  process.stdout.write(`decision latency: decide() ${perDecision.toFixed(2)} us per workload (median of ${n}); one pass over 100 workloads ${median(passes).toFixed(2)} ms (median of ${passes.length})\n`);
}

interface Sample { t: number; load: number; replicas: number; running: number }

function svg(samples: Sample[], onsetS: number, stopS: number): string {
  const W = 720, H = 300, L = 50, R = 50, T = 20, B = 40;
  const tMax = Math.max(...samples.map((s) => s.t), 1);
  const loadMax = Math.max(100, ...samples.map((s) => s.load));
  const repMax = Math.max(4, ...samples.map((s) => s.replicas));
  const x = (t: number): number => L + ((W - L - R) * t) / tMax;
  const yl = (v: number): number => H - B - ((H - T - B) * v) / loadMax;
  const yr = (v: number): number => H - B - ((H - T - B) * v) / repMax;
  const path = (f: (s: Sample) => number): string => samples.map((s, i) => `${i === 0 ? 'M' : 'L'}${x(s.t).toFixed(1)},${f(s).toFixed(1)}`).join(' ');
  const step = (f: (s: Sample) => number): string => samples.map((s, i) => (i === 0 ? `M${x(s.t).toFixed(1)},${f(s).toFixed(1)}` : `H${x(s.t).toFixed(1)} V${f(s).toFixed(1)}`)).join(' ');
  const ticks = Array.from({ length: Math.floor(tMax / 10) + 1 }, (_, i) => i * 10);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/><line x1="${W - R}" y1="${T}" x2="${W - R}" y2="${H - B}" stroke="#333"/>
${ticks.map((t) => `<text x="${x(t)}" y="${H - B + 14}" text-anchor="middle">${t}s</text>`).join('')}
<text x="${L - 6}" y="${T + 4}" text-anchor="end" fill="#c0392b">${Math.round(loadMax)}%</text><text x="${W - R + 6}" y="${T + 4}" fill="#2471a3">${repMax}</text>
<line x1="${x(onsetS)}" y1="${T}" x2="${x(onsetS)}" y2="${H - B}" stroke="#999" stroke-dasharray="4 3"/><text x="${x(onsetS) + 3}" y="${T + 12}" fill="#666">load on</text>
<line x1="${x(stopS)}" y1="${T}" x2="${x(stopS)}" y2="${H - B}" stroke="#999" stroke-dasharray="4 3"/><text x="${x(stopS) + 3}" y="${T + 12}" fill="#666">load off</text>
<path d="${path((s) => yl(s.load))}" fill="none" stroke="#c0392b" stroke-width="1.5"/>
<path d="${step((s) => yr(s.replicas))}" fill="none" stroke="#2471a3" stroke-width="2"/>
<path d="${step((s) => yr(s.running))}" fill="none" stroke="#7fb3d5" stroke-width="1.5" stroke-dasharray="5 3"/>
<text x="${L + 8}" y="${H - 8}" fill="#c0392b">cpu of the replicas summed, % of one replica's request (left)</text>
<text x="${L + 330}" y="${H - 8}" fill="#2471a3">replicas wanted (right, solid), running (dashed)</text>
</svg>
`;
}

async function reaction(svgPath: string): Promise<void> {
  const reg = await startRegistryWithImages(['busybox']);
  const cluster = await startCluster();
  const nc = await connect({ servers: cluster.nats.url });
  try {
    const agent = cluster.startAgent('bench-1');
    await waitFor('the agent to be Ready', async () => {
      if (agent.exited()) throw new Error(`agent exited early:\n${tailLog(agent)}`);
      return (await cluster.cli(['get', 'nodes', '-o', 'json'])).stdout.includes('NODE_STATE_READY');
    }, 60_000, 300);
    // Load is on between two wall-clock instants shared by every replica (10 s and 40 s from now).
    const onset = Date.now() + 10_000;
    const stop = onset + 30_000;
    const image = reg.images['busybox']?.reference ?? '';
    const spin = `on=${Math.floor(onset / 1000)}; off=${Math.floor(stop / 1000)}; while [ $(date +%s) -lt $on ]; do sleep 0.2; done; while [ $(date +%s) -lt $off ]; do :; done; exec sleep 3600`;
    const manifest = ['apiVersion: berth/v1', 'kind: Workload', 'metadata: { name: spin }', 'spec:', `  image: ${image}`, `  command: ["sh", "-c", ${JSON.stringify(spin)}]`,
      '  resources: { cpu: 200m }', '  autoscale: { min: 1, max: 4, metric: cpu, target: 50, scaleDown: { stabilizationSeconds: 10, periodSeconds: 5 } }', ''].join('\n');
    const applied = await cluster.cli(['apply', '-f', '-'], { stdin: manifest });
    if (applied.code !== 0) throw new Error(`apply failed: ${applied.stderr}`);

    let load = 0;
    const sub = nc.subscribe('berth.v1.node.*.metrics');
    void (async () => {
      for await (const m of sub) load = NodeMetrics.decode(m.data).replicas.filter((r) => r.workload === 'spin').reduce((n, r) => n + r.cpuPercent, 0);
    })();
    const t0 = Date.now();
    const samples: Sample[] = [];
    let firstAddedRunning: number | undefined;
    let backToMin: number | undefined;
    const initial = new Set<string>();
    while (Date.now() < stop + 60_000 && backToMin === undefined) {
      const [w, r] = await Promise.all([cluster.cli(['get', 'workloads', '-o', 'json']), cluster.cli(['get', 'replicas', '-o', 'json'])]);
      const spec = (JSON.parse(w.stdout) as { metadata?: { name?: string }; spec?: { replicas?: number } }[]).find((x) => x.metadata?.name === 'spin')?.spec?.replicas ?? 0;
      const reps = (JSON.parse(r.stdout) as { id?: string; workload?: string; status?: { state?: string; startedUnixMs?: string | number } }[]).filter((c) => c.workload === 'spin' && c.status?.state === 'CONTAINER_STATE_RUNNING');
      const now = Date.now();
      if (now < onset) for (const c of reps) initial.add(c.id ?? '');
      if (firstAddedRunning === undefined && now >= onset) {
        const added = reps.filter((c) => !initial.has(c.id ?? '')).map((c) => Number(c.status?.startedUnixMs ?? 0)).filter((s) => s > 0);
        if (added.length > 0) firstAddedRunning = Math.min(...added);
      }
      if (now > stop && spec === 1 && reps.length === 1) backToMin = now;
      samples.push({ t: (now - t0) / 1000, load, replicas: spec, running: reps.length });
      await new Promise((res) => setTimeout(res, 500));
    }
    sub.unsubscribe();
    const reactionS = firstAddedRunning === undefined ? NaN : (firstAddedRunning - onset) / 1000;
    process.stdout.write(`reaction (cpu): load onset -> first added replica running: ${reactionS.toFixed(1)} s (target < 10 s)\n`);
    process.stdout.write(`scale-down: load off -> back to min: ${backToMin === undefined ? 'not within 60 s' : `${((backToMin - stop) / 1000).toFixed(1)} s`} (window 10 s, steps of 50 % per 5 s)\n`);
    writeFileSync(svgPath, svg(samples, (onset - t0) / 1000, (stop - t0) / 1000));
    process.stdout.write(`timeline written to ${svgPath} (${samples.length} samples)\n`);
  } finally {
    await nc.close();
    await cluster.stop();
    await reg.stop();
  }
}

async function coldStart(rounds: number): Promise<void> {
  const reg = await startRegistryWithImages(['busybox']);
  // Ranges of its own: concurrent test runs guard the default ones in the root namespace (and drop bridged packets of others).
  const CLUSTER = '10.248.0.0/16';
  const SERVICES = '10.99.0.0/16';
  const hosts = await makeHosts(2, { guardRanges: [CLUSTER, SERVICES] });
  const cluster = await startCluster({ controller: false });
  try {
    const controller = startProcess({
      name: 'controller', command: process.execPath, env: cleanEnv(),
      args: () => [BERTH_JS, 'controller', '--etcd', cluster.etcd.url, '--nats', cluster.nats.url, '--listen', cluster.address, '--cluster-cidr', CLUSTER, '--service-cidr', SERVICES],
    });
    cluster.controller = controller;
    await waitFor('the controller to listen', () => {
      if (controller.exited()) throw new Error(`controller exited early:\n${tailLog(controller)}`);
      return tailLog(controller, 200).includes(`listening on ${cluster.address}`);
    }, 20_000);
    const agents = hosts.hosts.map((h, i) => cluster.startAgent(`node-${i}`, ['--network', 'cni', '--node-netns', `/run/netns/${h.netns}`, '--internal-ip', h.address, '--cleanup', '--labels', `role=${i === 0 ? 'app' : 'client'}`]));
    await waitFor('two Ready nodes', async () => {
      for (const a of agents) if (a.exited()) throw new Error(`agent exited early:\n${tailLog(a)}`);
      return ((await cluster.cli(['get', 'nodes', '-o', 'json'])).stdout.match(/NODE_STATE_READY/g) ?? []).length === 2;
    }, 60_000, 300);
    const image = reg.images['busybox']?.reference ?? '';
    // A container on node-1 gives it its bridge (and gateway, where held connections are sent).
    const keeper = await cluster.cli(['run', '-d', '--node', 'node-1', image, 'sleep', '3600']);
    if (keeper.code !== 0) throw new Error(`run failed: ${keeper.stderr}`);
    const manifest = ['apiVersion: berth/v1', 'kind: Workload', 'metadata: { name: cold }', 'spec:', '  replicas: 1', `  image: ${image}`,
      '  command: [sh, -c, \'mkdir -p /tmp/www && echo warm > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www\']',
      '  ports: [{ name: http, container: 80 }]', '  placement: { nodeSelector: { role: app } }',
      '  autoscale: { min: 0, max: 1, metric: requests, target: 100, scaleDown: { stabilizationSeconds: 0, periodSeconds: 1 }, scaleToZero: { idleSeconds: 2 } }', ''].join('\n');
    const applied = await cluster.cli(['apply', '-f', '-'], { stdin: manifest });
    if (applied.code !== 0) throw new Error(`apply failed: ${applied.stderr}`);
    const netns1 = hosts.hosts[1]!.netns;
    // curl runs on node-1 itself (not in a container, for a precise clock): give the node a route to the service range over its bridge.
    await waitFor('node-1\'s bridge', async () => (await tryRunIn(netns1, 'ip', ['route', 'replace', SERVICES, 'dev', 'berth0'])).code === 0, 30_000, 200);
    const service = async (): Promise<{ virtualIp?: string; endpoints?: unknown[] } | undefined> =>
      (JSON.parse((await cluster.cli(['get', 'services', '-o', 'json'])).stdout) as { name: string; virtualIp?: string; endpoints?: unknown[] }[]).find((x) => x.name === 'cold');
    const replicas = async (): Promise<number> => {
      const w = (JSON.parse((await cluster.cli(['get', 'workloads', '-o', 'json'])).stdout) as { metadata?: { name?: string }; spec?: { replicas?: number } }[]).find((x) => x.metadata?.name === 'cold');
      return w ? (w.spec?.replicas ?? 0) : -1;
    };
    const times: number[] = [];
    for (let r = 0; r < rounds; r++) {
      await waitFor('the workload at zero, held on node-1', async () => {
        if ((await replicas()) !== 0 || ((await service())?.endpoints ?? []).length > 0) return false;
        return (await tryRunIn(netns1, 'nft', ['list', 'table', 'ip', 'berth_svc'])).stdout.includes('"h:cold:80/tcp"');
      }, 120_000, 200);
      const vip = (await service())?.virtualIp ?? '';
      const res = await runIn(netns1, 'curl', ['-s', '--max-time', '30', '-w', '\n%{time_total}', `http://${vip}:80/`]).catch((err: unknown) => {
        const lines = agents.map((a, i) => `node-${i}:\n${tailLog(a, 100_000).split('\n').filter((l) => /activator|"level":"(warn|error)"/.test(l)).slice(-15).join('\n')}`).join('\n');
        throw new Error(`round ${r + 1}: ${err instanceof Error ? err.message : String(err)}\n${lines}`);
      });
      const lines = res.stdout.trim().split('\n');
      const total = lines[lines.length - 1] ?? '';
      const body = lines[0] ?? '';
      if (body !== 'warm') throw new Error(`round ${r + 1}: expected the page "warm", got ${JSON.stringify(res.stdout)}`);
      times.push(Number(total));
      process.stdout.write(`  round ${r + 1}: first response after ${Number(total).toFixed(3)} s\n`);
    }
    process.stdout.write(`cold start from zero: first response through the service address (held, one replica started on another node, image present): median ${median(times).toFixed(2)} s of ${times.length} (min ${Math.min(...times).toFixed(2)}, max ${Math.max(...times).toFixed(2)}; target < 1.5 s)\n`);
  } finally {
    await cluster.stop();
    await hosts.cleanup();
    await reg.stop();
  }
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--svg');
  const svgPath = i >= 0 ? (process.argv[i + 1] ?? 'docs/autoscale-timeline.svg') : 'docs/autoscale-timeline.svg';
  const c = process.argv.indexOf('--cold');
  const rounds = c >= 0 ? Number(process.argv[c + 1] ?? '5') : 5;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--cold: expected a whole number of rounds >= 1, got ${JSON.stringify(process.argv[c + 1])}`);
  const onlyCold = process.argv.includes('--only-cold');
  if (!onlyCold) await decisionLatency();
  if (!process.argv.includes('--no-cluster')) {
    if (!onlyCold) await reaction(svgPath);
    await coldStart(rounds);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
