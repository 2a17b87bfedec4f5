/**
 * Vocabulary of the scheduler (see README.md for the pipeline).
 *
 * - node: a machine an agent runs on, as seen in one ClusterSnapshot.
 * - capacity: what a node offers to replicas (its allocatable resources).
 *   `Infinity` in one dimension means "not limited"; 0 means "none".
 * - allocated: the sum of the resource requests of the replicas already
 *   placed on a node (of every workload).
 * - workload: a named set of identical replicas; the unit a request is for.
 * - replica: one copy of a workload, identified by a string id. It is
 *   pending until the scheduler places it on a node.
 * - evaluation: one run of the scheduler, identified by `evalId`. Every
 *   tie between equally good nodes is broken by a shuffle seeded from it, so
 *   the same snapshot, request and evalId always give the same plan.
 * - plan: the scheduler's answer: placements (replica -> node) and, for the
 *   replicas that fit nowhere, a reason summary that `berth describe` shows.
 *
 * The scheduler is pure: a snapshot and a request in, a plan out. It never
 * reads a clock, a file or the network, and never mutates its inputs. These
 * types are structurally compatible with the proto messages (Resources,
 * NodeResources, PlacementSpec), so the controller can pass those directly.
 */

/** Amounts of the three resources the scheduler accounts for. */
export interface ResourceAmounts {
  /** Thousandths of a CPU core. */
  readonly cpuMillis: number;
  readonly memoryBytes: number;
  readonly pids: number;
}

/** One node as the scheduler sees it. */
export interface NodeSnapshot {
  /** Unique within the snapshot. */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** False while the node is NotReady (missed heartbeats, lease expired). */
  readonly ready: boolean;
  /** A cordoned node keeps its replicas but gets no new ones. */
  readonly cordoned: boolean;
  /** Allocatable resources; `Infinity` means unlimited in that dimension. */
  readonly capacity: ResourceAmounts;
  /**
   * Resources already committed on this node. When omitted, it is the sum of
   * the `resources` of the entries of `ClusterSnapshot.replicas` on this node.
   * Give it when the node also runs things the snapshot does not list.
   */
  readonly allocated?: ResourceAmounts;
}

/** A replica that exists already (placed, or pending without a node). */
export interface ExistingReplica {
  readonly workload: string;
  readonly replica: string;
  /** The node it is placed on; undefined while it is pending. */
  readonly node?: string | undefined;
  /** Its resource request (counts toward the node's allocation). */
  readonly resources: ResourceAmounts;
  /**
   * When it was created (any monotonic number, e.g. unix ms); used only to
   * prefer removing the newest replicas when scaling down.
   */
  readonly createdAt?: number | undefined;
}

/** The state of the cluster one evaluation works on. */
export interface ClusterSnapshot {
  readonly nodes: readonly NodeSnapshot[];
  /** Replicas of every workload that exist already. */
  readonly replicas: readonly ExistingReplica[];
}

/** Where a workload may run and how its replicas are spread. */
export interface PlacementConstraints {
  /** Every label here must be on the node with exactly this value. */
  readonly nodeSelector?: Readonly<Record<string, string>> | undefined;
  /** Spread replicas across nodes (default true); false bin-packs them. */
  readonly spread?: boolean | undefined;
  /** Most replicas of this workload on one node; 0 or undefined = no limit. */
  readonly maxPerNode?: number | undefined;
}

/** The replicas of one workload waiting for a node. */
export interface PlacementRequest {
  readonly workload: string;
  /**
   * The pending replicas: their ids, or a count (then the ids in the plan
   * are "0", "1", ... "count-1").
   */
  readonly replicas: readonly string[] | number;
  /** The resource request of one replica; 0 in a dimension means none. */
  readonly resources: ResourceAmounts;
  readonly placement?: PlacementConstraints | undefined;
  /**
   * When set, the replicas may only run on one of these nodes (e.g. because
   * a local volume lives there). Other nodes are rejected with
   * RejectReason.NodeNotAllowed.
   */
  readonly requiredNodes?: readonly string[] | undefined;
  /**
   * Local volumes the replicas mount that exist already, with the node each
   * lives on: the replicas may only run there (RejectReason.VolumeOnOtherNode),
   * and when they cannot, the summary says where the volume is and why that
   * node cannot take them. Volumes that do not exist yet are left out (they
   * are created on whichever node is chosen).
   */
  readonly volumes?: readonly VolumeLocation[] | undefined;
}

/** A local volume and the node that holds it. */
export interface VolumeLocation {
  readonly name: string;
  readonly node: string;
}

export interface ScheduleOptions {
  /** The evaluation id; seeds the tie-break shuffle. Must not be empty. */
  readonly evalId: string;
}

/** One decision of the plan: run `replica` on `node`. */
export interface Placement {
  readonly replica: string;
  readonly node: string;
}

/** How many nodes rejected a replica for one reason. */
export interface ReasonCount {
  /** A RejectReason constant. */
  readonly reason: string;
  /** The human text of the reason ("insufficient memory"). */
  readonly text: string;
  /** Number of nodes rejected for this reason. */
  readonly nodes: number;
}

/** The replicas of a request that fit on no node, and why. */
export interface Unplaced {
  readonly replicas: readonly string[];
  /** Nodes in the snapshot. */
  readonly nodesTotal: number;
  /** Nodes that could still take one more replica (always 0 here). */
  readonly nodesAvailable: number;
  /** Each node counted once, under the first filter it failed. */
  readonly reasons: readonly ReasonCount[];
  /** e.g. "0/3 nodes: 2 insufficient memory, 1 cordoned". */
  readonly summary: string;
}

export interface PlacementPlan {
  readonly evalId: string;
  readonly workload: string;
  /** In the order of the request's replicas. */
  readonly placements: readonly Placement[];
  /** Undefined when every replica was placed. */
  readonly unplaced: Unplaced | undefined;
}

/** Which replicas of a workload to remove when scaling down. */
export interface RemovalRequest {
  readonly workload: string;
  /** How many replicas to remove. */
  readonly count: number;
}

/** One replica chosen for removal, with the rule that chose it. */
export interface Removal {
  readonly replica: string;
  readonly node: string | undefined;
  readonly why: RemovalWhy;
}

/** Why a replica was chosen for removal, strongest preference first. */
export type RemovalWhy = 'pending' | 'node-missing' | 'node-not-ready' | 'node-cordoned' | 'most-on-node';
