/**
 * A registry provisioned with test images, for tests that pull: one call
 * starts docker-registry on loopback and pushes the named images to it.
 */
import { pushTestImage, type PushedImage, type TestImageName } from './images.js';
import { startRegistry, type RegistryOptions, type RegistryService } from './services.js';

export interface RegistryWithImages {
  registry: RegistryService;
  /** By image name: HOST:PORT/NAME:latest and the manifest digest. */
  images: Record<string, PushedImage>;
  stop(): Promise<void>;
}

/** Starts a registry and pushes `names` (built or taken from the cache); the registry is stopped again when a push fails. */
export async function startRegistryWithImages(
  names: readonly (TestImageName | string)[],
  opts: RegistryOptions & { signal?: AbortSignal; credentials?: { username: string; password: string } } = {},
): Promise<RegistryWithImages> {
  const registry = await startRegistry(opts);
  try {
    const pushed = await Promise.all(names.map(async (n) => [n, await pushTestImage(registry.host, n, { signal: opts.signal, credentials: opts.credentials })] as const));
    return { registry, images: Object.fromEntries(pushed), stop: () => registry.stop() };
  } catch (err) {
    await registry.stop();
    throw err;
  }
}
