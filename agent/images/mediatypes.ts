/** Media types of the OCI image spec and Docker's schema 2 that Berth understands. */

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  OciLayerNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistTar: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** Accept header for manifest requests, most specific first. */
export const MANIFEST_ACCEPT = [MediaType.OciManifest, MediaType.OciIndex, MediaType.DockerManifest, MediaType.DockerManifestList].join(', ');

export function isManifest(mt: string): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export function isIndex(mt: string): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export type LayerCompression = 'gzip' | 'zstd' | 'none';

/**
 * How a layer is compressed, or a problem text for media types Berth cannot
 * unpack. zstd needs an external decoder (Node.js 20 has none); without one
 * it is refused.
 */
export function layerCompression(mt: string, zstd = false): LayerCompression | { problem: string } {
  switch (mt) {
    case MediaType.OciLayerGzip:
    case MediaType.OciLayerNondistGzip:
    case MediaType.DockerLayerGzip:
    case MediaType.DockerForeignLayerGzip:
      return 'gzip';
    case MediaType.OciLayerTar:
    case MediaType.OciLayerNondistTar:
      return 'none';
    case MediaType.OciLayerZstd:
    case MediaType.OciLayerNondistZstd:
      if (zstd) return 'zstd';
      return { problem: `layer media type "${mt}" is not supported: zstd-compressed layers cannot be unpacked by this agent (no zstd decoder configured; expected tar or tar+gzip)` };
    default:
      return { problem: `unknown layer media type "${mt}" (expected ${MediaType.OciLayerGzip}, ${MediaType.OciLayerTar} or ${MediaType.DockerLayerGzip})` };
  }
}
