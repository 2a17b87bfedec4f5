/** A recording OverlayMounter for tests that check what would be mounted, and how failures are handled. */
import type { OverlayMounter, OverlayMountRequest } from '../../../agent/sys/overlay.js';
import { overlayOptions } from '../../../agent/sys/overlay.js';

export class FakeOverlayMounter implements OverlayMounter {
  readonly mounts: (OverlayMountRequest & { data: string })[] = [];
  readonly unmounts: string[] = [];
  private readonly mounted = new Set<string>();
  /** When set, the next mount fails with this error. */
  failNext: Error | undefined;

  async mount(req: OverlayMountRequest): Promise<void> {
    const data = overlayOptions(req);
    if (this.failNext) {
      const err = this.failNext;
      this.failNext = undefined;
      throw err;
    }
    this.mounts.push({ ...req, data });
    this.mounted.add(req.target);
  }

  async unmount(target: string): Promise<void> {
    this.unmounts.push(target);
    this.mounted.delete(target);
  }

  async isMounted(target: string): Promise<boolean> {
    return this.mounted.has(target);
  }
}
