// `node scripts/bundle-cli.mjs [DIST]`: bundles the compiled CLI (DIST/cli/main.js,
// DIST default dist, and everything it imports, lazily loaded verbs included)
// into one CommonJS file, DIST/cli-bundle/main.cjs, then runs it (`version`
// and `run --rm`, in one process) to record V8's code cache for it
// (DIST/cli-bundle/main-<sha256 of the bundle>.cache).
// cmd/berth.js loads the bundle with that cache when both are there, and the
// modules under DIST/cli/ otherwise: one file and precompiled code instead of
// hundreds of modules to resolve and compile (docs/benchmarks.md, "berth run").
// The controller and agent are never bundled (they find files next to their
// own modules).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
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
// Record the code cache on runs of the commands whose start matters most
// (`version`, `run --rm`), in one process so that every function they compile
// is in it. The controller address is unreachable on purpose: each call fails
// at once (exit code 1), after the verb, its flags and the gRPC client ran.
const train = [
  ['version', '--controller', '127.0.0.1:1'],
  ['run', '--rm', '--controller', '127.0.0.1:1', 'busybox', 'true'],
];
const recorder = `
  import { PassThrough, Readable } from 'node:stream';
  const { loadBundledCli } = await import(${JSON.stringify(pathToFileURL(resolve(dist, 'cmd', 'cli-loader.js')).href)});
  const cli = loadBundledCli();
  if (!cli) throw new Error('no bundle to record the code cache of');
  for (const argv of ${JSON.stringify(train)}) {
    const code = await cli.runCli(argv, { stdout: new PassThrough(), stderr: new PassThrough(), stdin: Readable.from([]), env: {} });
    if (code !== 1) throw new Error(\`\${argv[0]}: exit \${code}, expected 1 (controller unreachable)\`);
  }
  cli.done();
`;
const r = spawnSync(process.execPath, ['--input-type=module', '-e', recorder], {
  env: { ...process.env, BERTH_WRITE_CODE_CACHE: '1' },
  stdio: ['ignore', 'ignore', 'pipe'],
});
if (r.status !== 0) process.stderr.write(`warning: recording the CLI's code cache: exit ${r.status}: ${r.stderr}\n`);
