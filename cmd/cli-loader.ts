/**
 * Loads the bundled CLI (scripts/bundle-cli.mjs) with V8's code cache for it,
 * so start-up skips resolving hundreds of modules and most compiling. The
 * cache is named by the bundle's sha256: a bundle rebuilt without its cache
 * runs uncached, never with a stale cache. BERTH_WRITE_CODE_CACHE=1 (the
 * build step) writes the cache after the command ran.
 * Returns undefined when there is no bundle (the caller then imports the
 * modules).
 *
 * Node's own modules come from process.getBuiltinModule, not import
 * statements: each of those is one more trip through the ESM loader at the
 * start of every command.
 */
import type * as CliModule from '../cli/main.js';

const { createHash } = process.getBuiltinModule('node:crypto');
const { existsSync, readFileSync, writeFileSync } = process.getBuiltinModule('node:fs');
const { createRequire } = process.getBuiltinModule('node:module');
const { dirname } = process.getBuiltinModule('node:path');
const { fileURLToPath } = process.getBuiltinModule('node:url');
const { Script } = process.getBuiltinModule('node:vm');

export function loadBundledCli(): { runCli: typeof CliModule.runCli; done: () => void } | undefined {
  const file = fileURLToPath(new URL('../cli-bundle/main.cjs', import.meta.url));
  if (!existsSync(file)) return undefined;
  const source = readFileSync(file, 'utf8');
  const cacheFile = file.replace(/main\.cjs$/, `main-${createHash('sha256').update(source).digest('hex').slice(0, 16)}.cache`);
  const cached = existsSync(cacheFile) ? readFileSync(cacheFile) : undefined;
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    ...(cached ? { cachedData: cached } : {}),
  });
  const mod = { exports: {} as typeof CliModule };
  (script.runInThisContext() as (e: unknown, r: NodeRequire, m: unknown, f: string, d: string) => void)(mod.exports, createRequire(file), mod, file, dirname(file));
  return {
    runCli: mod.exports.runCli,
    done: () => {
      if (process.env.BERTH_WRITE_CODE_CACHE === '1') writeFileSync(cacheFile, script.createCachedData());
    },
  };
}
