/**
 * Loads the bundled CLI (scripts/bundle-cli.mjs) with V8's code cache for it,
 * so start-up skips resolving hundreds of modules and most compiling. The
 * cache is named by the bundle's sha256: a bundle rebuilt without its cache
 * runs uncached, never with a stale cache. BERTH_WRITE_CODE_CACHE=1 (the
 * build step) writes the cache after the command ran.
 * Returns undefined when there is no bundle (the caller then imports the
 * modules).
 *
 * CommonJS, like cmd/berth.cts: no ES module loader at start-up.
 */
import type * as CliModule from '../cli/main.js' with { 'resolution-mode': 'import' };

import crypto = require('node:crypto');
import fs = require('node:fs');
import nodeModule = require('node:module');
import path = require('node:path');
import vm = require('node:vm');

function loadBundledCli(): { runCli: typeof CliModule.runCli; done: () => void } | undefined {
  const file = path.join(__dirname, '..', 'cli-bundle', 'main.cjs');
  if (!fs.existsSync(file)) return undefined;
  const source = fs.readFileSync(file, 'utf8');
  const cacheFile = file.replace(/main\.cjs$/, `main-${crypto.createHash('sha256').update(source).digest('hex').slice(0, 16)}.cache`);
  const cached = fs.existsSync(cacheFile) ? fs.readFileSync(cacheFile) : undefined;
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    ...(cached ? { cachedData: cached } : {}),
  });
  const mod = { exports: {} as typeof CliModule };
  (script.runInThisContext() as (e: unknown, r: NodeRequire, m: unknown, f: string, d: string) => void)(mod.exports, nodeModule.createRequire(file), mod, file, path.dirname(file));
  return {
    runCli: mod.exports.runCli,
    done: () => {
      if (process.env.BERTH_WRITE_CODE_CACHE === '1') fs.writeFileSync(cacheFile, script.createCachedData());
    },
  };
}

export = { loadBundledCli };
