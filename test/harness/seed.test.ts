import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { tryRun } from './exec.js';
import { startRegistry, type RegistryService } from './index.js';

const SEED = fileURLToPath(new URL('./seed.js', import.meta.url));

describe('test harness seed command', function () {
  this.timeout(120_000);
  let registry: RegistryService | undefined;
  afterEach(async () => {
    await registry?.stop();
    registry = undefined;
  });

  it('pushes the named images and prints reference and digest when given a registry', async () => {
    registry = await startRegistry();
    const res = await tryRun(process.execPath, [SEED, '--registry', registry.host, '--images', 'busybox,layered']);
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    for (const [i, name] of ['busybox', 'layered'].entries()) {
      const [ref, digest] = (lines[i] ?? '').split(' ');
      assert.equal(ref, `${registry.host}/${name}:latest`);
      const head = await fetch(`${registry.url}/v2/${name}/manifests/latest`, {
        method: 'HEAD', headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get('docker-content-digest'), digest);
    }
  });

  it('exits 2 naming the flag when the registry is missing or an image is unknown', async () => {
    const none = await tryRun(process.execPath, [SEED]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--registry: expected HOST:PORT/);
    const bad = await tryRun(process.execPath, [SEED, '--registry', '127.0.0.1:1', '--images', 'busybox,nosuch']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--images: unknown image "nosuch"/);
  });
});
