import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir } from '../harness/index.js';

/** Repository root: this file runs as <root>/<outDir>/test/proto/drift.test.js. */
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out.sort();
}

describe('proto/gen', () => {
  let tmp = '';
  afterEach(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('matches what `npm run proto` generates from the .proto files when the contract changed', () => {
    tmp = makeTempDir('proto');
    execFileSync('bash', ['scripts/gen-proto.sh', tmp], { cwd: repoRoot, stdio: 'pipe' });
    const committed = join(repoRoot, 'proto', 'gen');
    const want = listFiles(tmp).map((f) => relative(tmp, f));
    const have = listFiles(committed).map((f) => relative(committed, f));
    assert.deepEqual(have, want, 'proto/gen has the same files as a fresh generation (run `npm run proto`)');
    for (const f of want) {
      assert.equal(readFileSync(join(committed, f), 'utf8'), readFileSync(join(tmp, f), 'utf8'),
        `proto/gen/${f} differs from the generated code; run \`npm run proto\` and commit the result`);
    }
  });
});
