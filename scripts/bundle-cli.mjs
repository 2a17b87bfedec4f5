// `node scripts/bundle-cli.mjs [DIST]`: bundles the compiled CLI (DIST/cli/main.js,
// DIST default dist, and everything it imports, lazily loaded verbs included)
// into DIST/cli-bundle/main.js: one file to load instead of hundreds, which cuts the CLI's start-up (docs/benchmarks.md, "berth run").
// dist/cmd/berth.js uses the bundle when it is there and dist/cli/ otherwise;
// the controller and agent are never bundled (they find files next to their
// own modules).
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const dist = process.argv[2] ?? 'dist';
rmSync(`${dist}/cli-bundle`, { recursive: true, force: true });
await build({
  entryPoints: { main: `${dist}/cli/main.js` },
  outdir: `${dist}/cli-bundle`,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  minify: true,
  keepNames: true,
  logLevel: 'warning',
  // CommonJS dependencies (grpc-js) call require() for Node's own modules.
  banner: { js: "import { createRequire as __berthRequire } from 'node:module'; const require = __berthRequire(import.meta.url);" },
});
