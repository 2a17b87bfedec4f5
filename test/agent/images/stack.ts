/** Builds the real image stack (registry client, content store, snapshots, puller, service) in a temp dir. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../../lib/logging.js';
import { LocalContentStore } from '../../../agent/content/index.js';
import { ImagePuller, ImageRecordStore, ImageService, RegistryClient, type RegistryClientOptions } from '../../../agent/images/index.js';
import { OverlaySnapshotter } from '../../../agent/snapshots/index.js';
import { HelperNodeMaker, ZstdCliDecoder } from '../../../agent/sys/fsops.js';
import { LinuxOverlayMounter } from '../../../agent/sys/overlay.js';
import { fsopsHelperPath } from './fixtures.js';

export interface Stack {
  root: string;
  client: RegistryClient;
  content: LocalContentStore;
  snapshotter: OverlaySnapshotter;
  mounter: LinuxOverlayMounter;
  records: ImageRecordStore;
  puller: ImagePuller;
  service: ImageService;
  /** Unmounts every container snapshot and deletes the root. */
  destroy(): Promise<void>;
}

export interface StackOptions {
  defaultRegistry?: string;
  client?: RegistryClientOptions;
  maxLayerSize?: number;
  concurrency?: number;
  /** Where the temp data root is made; default the OS temp dir. */
  parentDir?: string;
  /** Decode zstd layers with the zstd CLI. */
  zstd?: boolean;
  /** Where layer files are created (PullerOptions.layerWriteMode). */
  layerWriteMode?: 'auto' | 'sync' | 'parallel';
}

export function makeStack(opts: StackOptions = {}): Stack {
  const root = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'berth-images-'));
  const client = new RegistryClient({ backoffMs: 20, ...opts.client });
  const content = new LocalContentStore(root);
  const mounter = new LinuxOverlayMounter();
  const snapshotter = new OverlaySnapshotter({ root, mounter });
  const records = new ImageRecordStore(root);
  const nodeMaker = new HelperNodeMaker({ helperPath: fsopsHelperPath() });
  const puller = new ImagePuller({
    client, content, snapshotter, nodeMaker, records, logger: silentLogger(),
    defaultRegistry: opts.defaultRegistry, maxLayerSize: opts.maxLayerSize, concurrency: opts.concurrency,
    ...(opts.layerWriteMode !== undefined ? { layerWriteMode: opts.layerWriteMode } : {}),
    ...(opts.zstd ? { zstd: new ZstdCliDecoder() } : {}),
  });
  const service = new ImageService({ puller, records, content, snapshotter, client, defaultRegistry: opts.defaultRegistry });
  return {
    root, client, content, snapshotter, mounter, records, puller, service,
    async destroy() {
      try {
        for (const c of await snapshotter.listContainers()) await snapshotter.removeContainer(c.id);
      } finally {
        client.close();
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
