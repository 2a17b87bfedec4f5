// `node scripts/bundle-cli.mjs [DIST]`: bundles the compiled CLI (DIST/cli/main.js,
// DIST default dist, and everything it imports, lazily loaded verbs included)
// into one CommonJS file, DIST/cli-bundle/main.cjs, then runs it (`version`
// and `run --rm`, in one process) to record V8's code cache for it
// (DIST/cli-bundle/main-<sha256 of the bundle>.cache).
// cmd/berth.cjs loads the bundle with that cache when both are there, and the
// modules under DIST/cli/ otherwise: one file and precompiled code instead of
// hundreds of modules to resolve and compile (docs/benchmarks.md, "berth run").
// The controller and agent are never bundled (they find files next to their
// own modules).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const dist = process.argv[2] ?? 'dist';
rmSync(`${dist}/cli-bundle`, { recursive: true, force: true });
await build({
  entryPoints: [`${dist}/cli/main.js`],
  outfile: `${dist}/cli-bundle/main.cjs`,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: true,
  keepNames: true,
  // Dynamic import() of Node's own modules becomes require(): the bundle runs as a vm.Script (for its
  // code cache), which has no loader for import().
  supported: { 'dynamic-import': false },
  // The CLI's gRPC client is cli/rpc.ts; grpc-js (and protobufjs, which it brings) stays out of the bundle.
  alias: { '@grpc/grpc-js': './scripts/grpc-js-stub.cjs' },
  logLevel: 'warning',
});
// Record V8's code cache for the bundle (scripts/record-cli-cache.mjs).
const r = spawnSync(process.execPath, [new URL('./record-cli-cache.mjs', import.meta.url).pathname, dist], {
  env: { ...process.env, BERTH_WRITE_CODE_CACHE: '1' },
  stdio: ['ignore', 'ignore', 'pipe'],
});
if (r.status !== 0) process.stderr.write(`warning: recording the CLI's code cache: exit ${r.status}: ${r.stderr}\n`);
