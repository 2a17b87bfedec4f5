/**
 * `spec.volumes` of a workload file: what each replica mounts.
 *
 *   volumes:
 *     - name: data          # a named volume (created on first use), or
 *       mountPath: /data
 *     - hostPath: /srv/config   # a host path the agent allows (--allow-bind)
 *       mountPath: /etc/app
 *       readOnly: true
 *
 * Each item names exactly one of `name` and `hostPath`; `mountPath` is an
 * absolute path inside the container, outside /proc, /sys and /dev, used by
 * one item only; `readOnly` defaults to false. The rules are lib/volumes.ts,
 * shared with `berth run -v`.
 */
import type { MountSpec } from '../../proto/gen/berth/v1/types.js';
import { bindSourceProblem, cleanDestination, MAX_MOUNTS, mountDestinationProblem, volumeNameProblem } from '../volumes.js';
import { isUnset, itemPath, readBoolean, readFields, readList, readString, type FieldEntry, type Reporter } from './reader.js';

const VOLUME_FIELDS = ['name', 'hostPath', 'mountPath', 'readOnly'] as const;

function value(fields: Map<string, FieldEntry>, name: string): unknown {
  const entry = fields.get(name);
  return entry === undefined || isUnset(entry.value) ? undefined : entry.value;
}

/** Reads spec.volumes; undefined after reporting every problem. */
export function readVolumes(r: Reporter, node: unknown): MountSpec[] | undefined {
  const items = readList(r, node, 'spec.volumes', 'a list of volumes', MAX_MOUNTS);
  if (items === undefined) return undefined;
  const before = r.count;
  const out: MountSpec[] = [];
  const destinations = new Map<string, string>();
  items.forEach((item, i) => {
    const path = itemPath('spec.volumes', i);
    const fields = readFields(r, item, path, VOLUME_FIELDS, 'a mapping with mountPath and either name or hostPath');
    if (fields === undefined) return;
    const nameNode = value(fields, 'name');
    const hostNode = value(fields, 'hostPath');
    let type = '';
    let source: string | undefined;
    if (nameNode !== undefined && hostNode !== undefined) {
      r.report(`${path}.hostPath`, hostNode, 'expected either name (a named volume) or hostPath (a host directory), not both');
    } else if (nameNode !== undefined) {
      type = 'volume';
      source = readString(r, nameNode, `${path}.name`, 'a volume name such as "data"');
      const p = source === undefined ? undefined : volumeNameProblem(source);
      if (p) r.report(`${path}.name`, nameNode, p);
    } else if (hostNode !== undefined) {
      type = 'bind';
      source = readString(r, hostNode, `${path}.hostPath`, 'an absolute host path such as "/srv/data"');
      const p = source === undefined ? undefined : bindSourceProblem(source);
      if (p) r.report(`${path}.hostPath`, hostNode, p);
    } else {
      r.report(path, item, 'required field is missing (expected name, a named volume, or hostPath, a host directory the agent allows)');
    }
    const mountNode = value(fields, 'mountPath');
    let destination: string | undefined;
    if (mountNode === undefined) {
      r.report(`${path}.mountPath`, fields.get('mountPath')?.key ?? item, 'required field is missing (expected an absolute path inside the container such as "/data")');
    } else {
      destination = readString(r, mountNode, `${path}.mountPath`, 'an absolute path inside the container such as "/data"');
      const p = destination === undefined ? undefined : mountDestinationProblem(destination);
      if (p) {
        r.report(`${path}.mountPath`, mountNode, p);
        destination = undefined;
      } else if (destination !== undefined) {
        const clean = cleanDestination(destination);
        const other = destinations.get(clean);
        if (other !== undefined) r.report(`${path}.mountPath`, mountNode, `duplicate mountPath ${JSON.stringify(clean)} (also used by ${other})`);
        else destinations.set(clean, path);
      }
    }
    const roNode = value(fields, 'readOnly');
    const readOnly = roNode === undefined ? false : readBoolean(r, roNode, `${path}.readOnly`);
    if (source !== undefined && destination !== undefined && readOnly !== undefined && type !== '') {
      out.push({ type, source, destination, readOnly });
    }
  });
  return r.count > before ? undefined : out;
}
