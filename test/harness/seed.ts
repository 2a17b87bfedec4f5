/**
 * Pushes test images to a registry, for the quickstart's demo images:
 *
 *   node dist/test/harness/seed.js --registry HOST:PORT [--images busybox,whalesay,...]
 *
 * Builds each image first when the cache (BERTH_TEST_CACHE, default
 * /var/cache/berth-test) does not hold it. Prints one line per image
 * (reference and digest); exits 2 on bad arguments, 1 when a build or push fails.
 */
import { parseArgs } from 'node:util';
import { pushTestImage, TEST_IMAGE_NAMES, isTestImageName } from './images.js';

const USAGE = `usage: seed --registry HOST:PORT [--images ${TEST_IMAGE_NAMES.join(',')}]`;

function fail(message: string, code: number): never {
  process.stderr.write(`seed: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let values: { registry?: string; images?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { registry: { type: 'string' }, images: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const registry = values.registry;
  if (!registry) fail(`--registry: expected HOST:PORT of a plain-HTTP registry, got nothing\n${USAGE}`, 2);
  if (!/^[A-Za-z0-9.-]+:\d{1,5}$/.test(registry)) fail(`--registry: expected HOST:PORT such as 127.0.0.1:25000, got "${registry}"`, 2);
  const names = (values.images ?? 'busybox,whalesay').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) fail(`--images: expected a comma-separated list of ${TEST_IMAGE_NAMES.join(', ')}, got nothing`, 2);
  const unknown = names.filter((n) => !isTestImageName(n));
  if (unknown.length > 0) fail(`--images: unknown image ${unknown.map((n) => `"${n}"`).join(', ')}: expected some of ${TEST_IMAGE_NAMES.join(', ')}`, 2);
  for (const name of names) {
    try {
      const pushed = await pushTestImage(registry, name);
      process.stdout.write(`${pushed.reference} ${pushed.digest}\n`);
    } catch (err) {
      fail((err as Error).message, 1);
    }
  }
}

await main();
