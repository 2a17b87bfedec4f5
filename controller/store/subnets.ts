/**
 * Node subnet allocation: each registered node gets one /24 of the cluster
 * range (controller --cluster-cidr, default 10.244.0.0/16) for its
 * containers.
 *
 * Keys (beside the layout in keys.ts):
 *   <prefix>subnets/<index, 5 digits>   node name (UTF-8) holding the index-th /24
 *
 * The node record carries the subnet too (Node.network.subnet). Both are
 * written in one transaction that also checks the subnet key is still free,
 * so no two nodes ever share a subnet; a re-registering node keeps its
 * subnet; deleting a node deletes its subnet key in the same transaction.
 */
import { FailedPreconditionError, formatCidr, nodeSubnet, nodeSubnetCount, nodeSubnetIndex, type Ipv4Cidr } from '../../lib/index.js';

export function subnetsPrefix(prefix: string): string {
  return `${prefix}subnets/`;
}

export function subnetKey(prefix: string, index: number): string {
  return `${subnetsPrefix(prefix)}${String(index).padStart(5, '0')}`;
}

/** The index of a subnet key, or undefined for another key. */
export function subnetIndexOfKey(prefix: string, key: string): number | undefined {
  const p = subnetsPrefix(prefix);
  if (!key.startsWith(p)) return undefined;
  const rest = key.slice(p.length);
  return /^\d{5}$/.test(rest) ? Number(rest) : undefined;
}

/**
 * The subnet a registering node gets: its current one when it has one inside
 * the cluster range and owns its key, else the first free index at or after
 * a start point hashed from the name (wrapping around). `owners` maps taken
 * indexes to node names.
 */
export function chooseSubnet(cluster: Ipv4Cidr, node: string, current: string | undefined, owners: ReadonlyMap<number, string>): { index: number; subnet: string } {
  if (current) {
    const i = nodeSubnetIndex(cluster, current);
    if (i !== undefined && (owners.get(i) ?? node) === node) return { index: i, subnet: current };
  }
  for (const [i, owner] of owners) {
    if (owner === node) return { index: i, subnet: formatCidr(nodeSubnet(cluster, i)) };
  }
  const n = nodeSubnetCount(cluster);
  // Start at a point derived from the name, so that nodes registering at the same time rarely race for one key.
  const start = nameHash(node) % n;
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n;
    if (!owners.has(i)) return { index: i, subnet: formatCidr(nodeSubnet(cluster, i)) };
  }
  throw new FailedPreconditionError(`failed to allocate a container subnet for node "${node}": all ${n} /24 subnets of the cluster range ${formatCidr(cluster)} are taken; remove nodes or use a larger --cluster-cidr`);
}

/** FNV-1a of the name (32 bits). */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}
