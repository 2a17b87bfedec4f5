/**
 * Local volumes of workload replicas, for decide(): a replica that mounts a
 * volume that exists is placed on the volume's node (the scheduler's volume
 * filter); a volume used for the first time is placed with its first replica
 * and the rest of that request follows it there, so every replica of a
 * workload shares one copy. Pure: the caller records the claims.
 */
import { volumeNames, type MountLike } from '../../lib/index.js';
import type { VolumeLocation } from '../scheduler/index.js';

export interface VolumeClaim {
  name: string;
  node: string;
}

export interface VolumePlacement {
  /** Where the request's volumes are (give these to the scheduler); empty when it mounts none. */
  volumes: VolumeLocation[];
  /** Volumes without a record yet, to record on the chosen node once a replica is placed there. */
  claims: VolumeClaim[];
}

/**
 * The volumes of `mounts`, located through `known` (records) and `claimed`
 * (first uses decided earlier in this pass). When some have no location,
 * `pick` chooses the node for one replica (the scheduler with the known
 * volumes only); the new ones go there. Undefined `pick` result: nowhere
 * to go, and nothing is claimed.
 */
export function volumePlacement(
  mounts: readonly MountLike[],
  known: ReadonlyMap<string, string> | undefined,
  claimed: readonly VolumeClaim[],
  pick: (volumes: VolumeLocation[]) => string | undefined,
): VolumePlacement {
  const names = volumeNames(mounts);
  if (names.length === 0) return { volumes: [], claims: [] };
  const volumes: VolumeLocation[] = [];
  const unknown: string[] = [];
  for (const name of names) {
    const node = known?.get(name) ?? claimed.find((c) => c.name === name)?.node;
    if (node === undefined) unknown.push(name);
    else volumes.push({ name, node });
  }
  if (unknown.length === 0) return { volumes, claims: [] };
  const node = pick(volumes);
  if (node === undefined) return { volumes, claims: [] };
  const claims = unknown.map((name) => ({ name, node }));
  return { volumes: [...volumes, ...claims], claims };
}
