/**
 * Parsing and validation of manifests, indexes and image configs. All input is
 * hostile: every field used is type-checked and errors name the field.
 */
import { createHash } from 'node:crypto';
import type { Descriptor } from '../content/index.js';
import { ManifestError } from './errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface IndexEntry extends Descriptor {
  platform?: Platform;
}

export interface ImageManifest {
  config: Descriptor;
  layers: Descriptor[];
}

/** The parts of an image config Berth keeps. */
export interface ImageConfig {
  architecture: string;
  os: string;
  created?: string;
  diffIds: string[];
  /** The `config` section (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Labels...) as found. */
  config: Record<string, unknown>;
}

const DIGEST = /^sha256:[a-f0-9]{64}$/;
/** Most layers accepted in one image (overlayfs itself stops at 500). */
export const MAX_LAYERS = 500;

function parseJson(image: string, what: string, bytes: Buffer, digest?: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new ManifestError(image, `failed to parse ${what} of "${image}": not valid JSON (${(err as Error).message})`, { digest });
  }
  if (j === null || typeof j !== 'object' || Array.isArray(j)) {
    throw new ManifestError(image, `failed to parse ${what} of "${image}": expected a JSON object`, { digest });
  }
  return j as Record<string, unknown>;
}

function descriptor(image: string, what: string, v: unknown, digest?: string): Descriptor {
  const bad = (problem: string): ManifestError => new ManifestError(image, `invalid ${what} in manifest of "${image}": ${problem}`, { digest });
  if (v === null || typeof v !== 'object') throw bad('expected an object');
  const d = v as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') throw bad('"mediaType" must be a string');
  if (typeof d.digest !== 'string' || !DIGEST.test(d.digest)) throw bad(`"digest" ${JSON.stringify(String(d.digest).slice(0, 80))} is not sha256:<64 hex>`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw bad(`"size" must be a whole number of bytes, got ${JSON.stringify(d.size)}`);
  return { mediaType: d.mediaType, digest: d.digest, size: d.size };
}

export function parseIndex(image: string, bytes: Buffer, digest: string): IndexEntry[] {
  const j = parseJson(image, 'index', bytes, digest);
  if (!Array.isArray(j.manifests)) throw new ManifestError(image, `invalid index of "${image}": "manifests" must be an array`, { digest });
  return j.manifests.map((m, i) => {
    const d = descriptor(image, `manifests[${i}]`, m, digest);
    const p = (m as Record<string, unknown>).platform as Record<string, unknown> | undefined;
    const out: IndexEntry = { ...d };
    if (p && typeof p === 'object' && typeof p.os === 'string' && typeof p.architecture === 'string') {
      out.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === 'string' ? { variant: p.variant } : {}) };
    }
    return out;
  });
}

/** The platform of this node in OCI terms. */
export function nodePlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

/** Picks the manifest for `want` from an index (variant matched when both name one). */
export function selectPlatform(image: string, entries: IndexEntry[], want: Platform, digest: string): IndexEntry {
  const match = entries.find((e) => e.platform?.os === want.os && e.platform.architecture === want.architecture &&
    (want.variant === undefined || e.platform.variant === undefined || e.platform.variant === want.variant));
  if (!match) {
    const have = entries.map((e) => (e.platform ? `${e.platform.os}/${e.platform.architecture}${e.platform.variant ? `/${e.platform.variant}` : ''}` : 'unknown')).join(', ');
    throw new ManifestError(image, `image "${image}" has no manifest for platform ${want.os}/${want.architecture} (it offers: ${have || 'nothing'})`, { digest, code: 'not_found' });
  }
  return match;
}

export function parseManifest(image: string, bytes: Buffer, digest: string): ImageManifest {
  const j = parseJson(image, 'manifest', bytes, digest);
  if (j.schemaVersion !== 2) throw new ManifestError(image, `invalid manifest of "${image}": "schemaVersion" must be 2, got ${JSON.stringify(j.schemaVersion)}`, { digest });
  const config = descriptor(image, 'config', j.config, digest);
  if (!Array.isArray(j.layers)) throw new ManifestError(image, `invalid manifest of "${image}": "layers" must be an array`, { digest });
  if (j.layers.length > MAX_LAYERS) throw new ManifestError(image, `manifest of "${image}" has ${j.layers.length} layers (expected at most ${MAX_LAYERS})`, { digest });
  const layers = j.layers.map((l, i) => descriptor(image, `layers[${i}]`, l, digest));
  return { config, layers };
}

export function parseConfig(image: string, bytes: Buffer, digest: string): ImageConfig {
  const j = parseJson(image, 'config', bytes, digest);
  const rootfs = j.rootfs as Record<string, unknown> | undefined;
  if (!rootfs || typeof rootfs !== 'object' || !Array.isArray(rootfs.diff_ids)) {
    throw new ManifestError(image, `invalid config of "${image}": "rootfs.diff_ids" must be an array`, { digest });
  }
  const diffIds = rootfs.diff_ids.map((d, i) => {
    if (typeof d !== 'string' || !DIGEST.test(d)) throw new ManifestError(image, `invalid config of "${image}": rootfs.diff_ids[${i}] is not sha256:<64 hex>`, { digest });
    return d;
  });
  const cfg = j.config && typeof j.config === 'object' && !Array.isArray(j.config) ? (j.config as Record<string, unknown>) : {};
  return {
    architecture: typeof j.architecture === 'string' ? j.architecture : '',
    os: typeof j.os === 'string' ? j.os : '',
    ...(typeof j.created === 'string' ? { created: j.created } : {}),
    diffIds,
    config: cfg,
  };
}

/** Chain IDs of a stack of diff IDs (base first). */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}
