/**
 * One-off containers (`berth run`): placed by the same scheduler as replicas,
 * recorded as a container record with an empty `workload`. Pure functions:
 * the API reads nodes and records, calls these, writes the record and asks the
 * agent to run it.
 *
 * One-off records are not restarted or re-placed by the reconciler (the
 * agent's restart policy applies); a record whose container its node no longer
 * reports (auto-removed after exit, or removed on the node) is deleted once it
 * is older than ONE_OFF_SETTLE_MS, so a container still being started is never
 * mistaken for a gone one.
 */
import { ContainerState, type Container, type ContainerSpec } from '../../proto/gen/berth/v1/types.js';
import { schedule, type ClusterSnapshot, type ExistingReplica, type NodeSnapshot, type PlacementPlan, type VolumeLocation } from '../scheduler/index.js';
import type { ReconcileNode } from './decide.js';

export const ONE_OFF_SETTLE_MS = 30_000;

const ADJECTIVES = [
  'brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'proud',
  'quiet', 'rapid', 'sharp', 'tender', 'upbeat', 'vivid', 'witty', 'zealous', 'bold', 'clever', 'daring', 'elated',
];
const NAMES = [
  'turing', 'hopper', 'lovelace', 'dijkstra', 'knuth', 'ritchie', 'thompson', 'liskov', 'hamilton', 'shannon', 'noether', 'curie',
  'babbage', 'kay', 'lamport', 'backus', 'mccarthy', 'perlman', 'wirth', 'hoare', 'goldberg', 'allen', 'cerf', 'kahn',
];

/** A Docker-style generated name ("brave-turing"), "-2", "-3", ... appended while `taken` says it is used. */
export function generateName(random: () => number, taken: (name: string) => boolean): string {
  const pick = (list: readonly string[]): string => list[Math.floor(random() * list.length) % list.length] as string;
  const base = `${pick(ADJECTIVES)}-${pick(NAMES)}`;
  if (!taken(base)) return base;
  for (let i = 2; ; i++) if (!taken(`${base}-${i}`)) return `${base}-${i}`;
}

export interface OneOffRequest {
  id: string;
  name: string;
  spec: ContainerSpec;
  /** Only this node when set. */
  node?: string;
  nodeSelector?: Record<string, string>;
  evalId: string;
  now: number;
  /** Existing local volumes the container mounts, with their nodes: it must run there. */
  volumes?: VolumeLocation[];
}

/** Places one one-off container; returns its record (desired RUNNING) or the scheduler's reason summary. */
export function placeOneOff(nodes: readonly ReconcileNode[], records: readonly Container[], req: OneOffRequest): { record: Container } | { unplaced: string } {
  const snapshot: ClusterSnapshot = {
    nodes: nodes.map((n): NodeSnapshot => ({
      name: n.name, labels: n.labels, ready: n.condition === 'ready', cordoned: n.cordoned,
      capacity: {
        cpuMillis: n.capacity.cpuMillis > 0 ? n.capacity.cpuMillis : Infinity,
        memoryBytes: n.capacity.memoryBytes > 0 ? n.capacity.memoryBytes : Infinity,
        pids: n.capacity.pids > 0 ? n.capacity.pids : Infinity,
      },
    })),
    replicas: records
      .filter((r) => r.desiredState !== ContainerState.CONTAINER_STATE_REMOVED && r.node !== '')
      .map((r): ExistingReplica => ({
        workload: r.workload === '' ? `one-off/${r.id}` : r.workload, replica: r.id, node: r.node,
        resources: { cpuMillis: r.spec?.resources?.cpuMillis ?? 0, memoryBytes: r.spec?.resources?.memoryBytes ?? 0, pids: r.spec?.resources?.pids ?? 0 },
      })),
  };
  const plan: PlacementPlan = schedule(snapshot, {
    workload: `one-off/${req.id}`,
    replicas: [req.id],
    resources: { cpuMillis: req.spec.resources?.cpuMillis ?? 0, memoryBytes: req.spec.resources?.memoryBytes ?? 0, pids: req.spec.resources?.pids ?? 0 },
    placement: { nodeSelector: req.nodeSelector ?? {}, spread: true, maxPerNode: 0 },
    ...(req.node ? { requiredNodes: [req.node] } : {}),
    ...(req.volumes && req.volumes.length > 0 ? { volumes: req.volumes } : {}),
  }, { evalId: req.evalId });
  const placed = plan.placements[0];
  if (!placed) return { unplaced: plan.unplaced?.summary ?? 'no node could take it' };
  return {
    record: {
      id: req.id, name: req.name, node: placed.node, workload: '', revision: 0, replica: 0, spec: req.spec,
      createdUnixMs: req.now, desiredState: ContainerState.CONTAINER_STATE_RUNNING, updatedUnixMs: req.now,
    },
  };
}
