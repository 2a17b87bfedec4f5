// Marks the built entry points executable so `npx berth` and the bin links work.
import { chmodSync, existsSync } from 'node:fs';
for (const f of ['dist/cmd/berth.cjs', 'dist/agent/runtime-cli/main.js']) {
  if (existsSync(f)) chmodSync(f, 0o755);
}
