/**
 * The etcd key layout (documented in docs/internals.md; change both together).
 *
 *   <prefix>workloads/<name>                     Workload (protobuf)
 *   <prefix>revisions/<name>/<revision, 12 digits> WorkloadRevision (protobuf)
 *   <prefix>nodes/<name>                         Node (protobuf)
 *   <prefix>election/leader                      controller id (UTF-8), attached to the leader's lease
 *   <prefix>cluster/id                           cluster id (UTF-8), written once
 *   <prefix>containers/<id, 64 hex>              Container record (protobuf), written by the leader's reconciler
 *   <prefix>status/workloads/<name>              WorkloadStatus (protobuf), written by the leader's reconciler
 *   <prefix>drains/<name>                        unix ms (UTF-8) when NodeService.Drain was called; deleted by uncordon
 *   <prefix>events/<unix ms, 13 digits>-<8 hex>  Event (protobuf); the last EVENTS_KEPT are kept
 *   <prefix>volumes/<name>                       Volume (protobuf, without in_use_by): the node holding it
 *
 * The prefix is "/berth/v1/" in production; tests may use another one. Names
 * are DNS labels (no "/"), so "<kind>/<name>" never matches a longer name as a
 * prefix when the trailing "/" is kept.
 */
export const DEFAULT_PREFIX = '/berth/v1/';
const REVISION_DIGITS = 12;

export class KeyLayout {
  constructor(readonly prefix: string = DEFAULT_PREFIX) {}

  workloads(): string {
    return `${this.prefix}workloads/`;
  }
  workload(name: string): string {
    return `${this.workloads()}${name}`;
  }
  revisions(name: string): string {
    return `${this.prefix}revisions/${name}/`;
  }
  revision(name: string, revision: number): string {
    return `${this.revisions(name)}${String(revision).padStart(REVISION_DIGITS, '0')}`;
  }
  nodes(): string {
    return `${this.prefix}nodes/`;
  }
  node(name: string): string {
    return `${this.nodes()}${name}`;
  }
  containers(): string {
    return `${this.prefix}containers/`;
  }
  container(id: string): string {
    return `${this.containers()}${id}`;
  }
  workloadStatuses(): string {
    return `${this.prefix}status/workloads/`;
  }
  workloadStatus(name: string): string {
    return `${this.workloadStatuses()}${name}`;
  }
  drains(): string {
    return `${this.prefix}drains/`;
  }
  drain(name: string): string {
    return `${this.drains()}${name}`;
  }
  events(): string {
    return `${this.prefix}events/`;
  }
  event(unixMs: number, suffix: string): string {
    return `${this.events()}${String(Math.max(0, Math.floor(unixMs))).padStart(13, '0')}-${suffix}`;
  }
  volumes(): string {
    return `${this.prefix}volumes/`;
  }
  volume(name: string): string {
    return `${this.volumes()}${name}`;
  }
  clusterId(): string {
    return `${this.prefix}cluster/id`;
  }
  leader(): string {
    return `${this.prefix}election/leader`;
  }
  /** The name at the end of a workload or node key. */
  nameOf(key: string, kindPrefix: string): string {
    return key.startsWith(kindPrefix) ? key.slice(kindPrefix.length) : key;
  }
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end). */
export function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      b[i] = (b[i] as number) + 1;
      return b.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
