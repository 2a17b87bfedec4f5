/**
 * The controller's desired-state store.
 *
 * Vocabulary
 * - workload: a named, labelled WorkloadSpec the user applied. Its `status.revision`
 *   is the spec revision: 1 when created, +1 each time the spec changes (apply with
 *   a different canonical spec, or scale). Label-only changes keep the revision.
 * - revision record: a WorkloadRevision kept for each spec revision; the last
 *   REVISIONS_KEPT per workload are kept, older ones are deleted in the same write.
 * - node record: what an agent registered (NodeSpec) plus the status the leader
 *   last persisted (NodeStatus). Live heartbeat state is not stored here; see
 *   controller/nodes/.
 * - write: every mutating call is atomic. An apply of many documents either
 *   writes all of them or none (one etcd transaction guarded by the mod revision
 *   of every key it read; conflicting writers are retried a few times and then
 *   fail with ConflictError).
 *
 * Lifecycle
 * A store is built by main.ts (etcd) or a test (memory), used by any number of
 * concurrent callers, and closed once with close(); calls after close() fail.
 * Every method takes `{ signal }` and fails with CancelledError when it fires.
 *
 * Errors: NotFoundError for unknown names, InvalidArgumentError for values out of
 * range, ConflictError when optimistic concurrency gives up, UnavailableError when
 * the backing store cannot be reached.
 */
import type { Container, Event, Node, NodeSpec, NodeStatus, Workload, WorkloadRevision, WorkloadSpec, WorkloadStatus } from '../../proto/gen/berth/v1/types.js';
import type { Volume } from '../../proto/gen/berth/v1/volumes.js';

export type { Container, Event, Node, NodeSpec, NodeStatus, Volume, Workload, WorkloadRevision, WorkloadSpec, WorkloadStatus };

/** How many revision records each workload keeps. */
export const REVISIONS_KEPT = 10;
/** Largest replica count a workload may ask for. */
export const MAX_REPLICAS = 10000;

export interface CallOptions {
  signal?: AbortSignal;
}

/** One validated workload document, ready to store. */
export interface WorkloadDocument {
  name: string;
  labels: Record<string, string>;
  /** The spec with every default filled in (lib/workload's output). */
  spec: WorkloadSpec;
}

export type ApplyAction = 'created' | 'configured' | 'unchanged';

export interface ApplyOutcome {
  name: string;
  action: ApplyAction;
  /** The spec revision in force after the apply. */
  revision: number;
  workload: Workload;
}

export interface ApplyOptions extends CallOptions {
  /** Compute the outcome without writing anything. */
  dryRun?: boolean;
  /** Recorded as the cause of new revisions; "apply" by default. */
  cause?: string;
}

export interface DeleteOptions extends CallOptions {
  /** Skip names that do not exist instead of failing the whole call. */
  ignoreNotFound?: boolean;
}

/** A change seen by watchWorkloads. */
export interface WorkloadChange {
  type: 'added' | 'modified' | 'deleted';
  /** For 'deleted', the last stored value. */
  workload: Workload;
}

/** label=value pairs that must all match; an empty selector matches everything. */
export type LabelSelector = Record<string, string>;

export interface WorkloadReader {
  getWorkload(name: string, opts?: CallOptions): Promise<Workload>;
  listWorkloads(selector?: LabelSelector, opts?: CallOptions): Promise<Workload[]>;
  /** Revision records of one workload, oldest first. */
  workloadHistory(name: string, opts?: CallOptions): Promise<WorkloadRevision[]>;
}

export interface WorkloadWriter {
  /** Applies every document or none; outcomes are in document order. */
  applyWorkloads(docs: readonly WorkloadDocument[], opts?: ApplyOptions): Promise<ApplyOutcome[]>;
  /** Deletes workloads and their revision records in one write; returns the names deleted. */
  deleteWorkloads(names: readonly string[], opts?: DeleteOptions): Promise<string[]>;
  /** Sets replicas; a different count makes a new revision with cause "scale". */
  scaleWorkload(name: string, replicas: number, opts?: CallOptions): Promise<Workload>;
}

export interface WorkloadWatcher {
  /**
   * Yields every current workload as 'added', then each change, until the
   * signal fires (the iteration then ends without error) or the store fails.
   */
  watchWorkloads(opts?: CallOptions): AsyncIterable<WorkloadChange>;
}

export type WorkloadStore = WorkloadReader & WorkloadWriter & WorkloadWatcher;

export interface NodeStore {
  /**
   * Creates or refreshes a node record from what its agent reports. The cordon
   * flag and persisted status of an existing record are kept.
   */
  registerNode(spec: NodeSpec, opts?: CallOptions): Promise<Node>;
  getNode(name: string, opts?: CallOptions): Promise<Node>;
  listNodes(opts?: CallOptions): Promise<Node[]>;
  /** Sets the cordon flag; uncordoning also ends a drain. */
  setNodeCordoned(name: string, cordoned: boolean, opts?: CallOptions): Promise<Node>;
  /**
   * Cordons the node and marks it draining (the leader moves its replicas
   * away). The mark lives under its own key, apart from the node record.
   */
  drainNode(name: string, opts?: CallOptions): Promise<Node>;
  /** Names of the nodes being drained. */
  listDrainingNodes(opts?: CallOptions): Promise<string[]>;
  /** Replaces the persisted status (the leader calls this on transitions). */
  setNodeStatus(name: string, status: NodeStatus, opts?: CallOptions): Promise<Node>;
  /**
   * Deletes a node record with its drain mark and releases its container
   * subnet (Node.network.subnet, allocated by registerNode) in one write.
   */
  deleteNode(name: string, opts?: CallOptions): Promise<void>;
}

/** Which container records to list; every given field must match. */
export interface ContainerFilter {
  workload?: string;
  node?: string;
}

/** A change to container records: records to create or replace (by id) and ids to delete. */
export interface ContainerRecordChange {
  put?: readonly Container[];
  delete?: readonly string[];
}

/**
 * Container records: one per container the controller decided on (a replica
 * of a workload today), keyed by its 64-hex id. Written only by the leader's
 * reconciler. `desiredState` says what the controller wants (RUNNING, or
 * REMOVED while the removal is in progress). Records live under their own keys,
 * apart from the workload, so reconciler writes never conflict with apply.
 *
 * Workload status (desired/running/ready/pending and conditions) is kept under
 * a separate key per workload for the same reason; deleting a workload deletes
 * its status key too.
 */
export interface ContainerRecordStore {
  /** Records in id order, filtered. */
  listContainerRecords(filter?: ContainerFilter, opts?: CallOptions): Promise<Container[]>;
  /** NotFoundError for an unknown id. */
  getContainerRecord(id: string, opts?: CallOptions): Promise<Container>;
  /**
   * Writes every put and delete. Changes of up to CONTAINER_OPS_PER_TXN
   * operations are one atomic write; bigger ones are split into such batches,
   * several written at once (in order when an id is both put and deleted;
   * each record stands alone, so a crash or failure between batches leaves
   * valid records only).
   */
  writeContainerRecords(change: ContainerRecordChange, opts?: CallOptions): Promise<void>;
  /** The last status written for a workload, or undefined. */
  getWorkloadStatus(name: string, opts?: CallOptions): Promise<WorkloadStatus | undefined>;
  setWorkloadStatus(name: string, status: WorkloadStatus, opts?: CallOptions): Promise<void>;
}

/** Which events to list. */
export interface EventFilter {
  /** Only events at or after this time. */
  sinceUnixMs?: number;
  /** Only the newest `limit` matching events (0 or undefined: all). */
  limit?: number;
  /** Only events whose `workload` is this. */
  workload?: string;
  kind?: string;
}

/** How many events the store keeps; older ones are deleted as new ones arrive. */
export const EVENTS_KEPT = 1000;

/**
 * Events: what the controller decided and saw (Scheduled, Started,
 * Rescheduled, NodeNotReady, ...), a bounded history in time order.
 */
export interface EventStore {
  /** Appends events (ordered by `unixMs`); prunes the history to EVENTS_KEPT. */
  appendEvents(events: readonly Event[], opts?: CallOptions): Promise<void>;
  /** Matching events, oldest first. */
  listEvents(filter?: EventFilter, opts?: CallOptions): Promise<Event[]>;
}

/**
 * Volume records: one per named volume (`<prefix>volumes/<name>`), saying
 * which node holds its data. `inUseBy` is never stored (it is derived from
 * container records when read by the API).
 */
export interface VolumeStore {
  /** Every volume record, by name. */
  listVolumes(opts?: CallOptions): Promise<Volume[]>;
  /** The record, or undefined when there is none. */
  getVolume(name: string, opts?: CallOptions): Promise<Volume | undefined>;
  /** Writes a new record; AlreadyExistsError when the name is taken. */
  createVolume(volume: Volume, opts?: CallOptions): Promise<Volume>;
  /** Creates or replaces a record. */
  putVolume(volume: Volume, opts?: CallOptions): Promise<void>;
  /** Deletes records (missing names are skipped) in one write. */
  deleteVolumes(names: readonly string[], opts?: CallOptions): Promise<void>;
}

/** Most container record operations in one atomic write. */
export const CONTAINER_OPS_PER_TXN = 100;

/** Facts about the cluster as a whole. */
export interface ClusterStore {
  /** A random id made the first time any controller asks, then the same forever (told to agents at registration). */
  clusterId(opts?: CallOptions): Promise<string>;
}

export interface Closable {
  close(): Promise<void>;
}

/** Everything the controller keeps about the desired state of the cluster. */
export type DesiredStore = WorkloadStore & NodeStore & ContainerRecordStore & EventStore & ClusterStore & Closable;

/**
 * One period during which this controller is the leader. `signal` aborts when
 * the term ends (lease lost, resigned, stopped); work started for the term
 * (reconcile loops) must stop then.
 */
export interface LeadershipTerm {
  readonly controllerId: string;
  readonly startedUnixMs: number;
  readonly signal: AbortSignal;
}

/**
 * Leader election among controllers.
 *
 * Lifecycle: start() begins campaigning in the background; the controller may
 * become leader, lose it and win again any number of times; stop() resigns (the
 * next controller takes over at once) and ends campaigning.
 */
export interface LeaderElection {
  readonly controllerId: string;
  start(): void;
  isLeader(): boolean;
  /** The id of the current leader as last seen, or undefined when none is known. */
  leaderId(): string | undefined;
  /** The current term when leader. */
  currentTerm(): LeadershipTerm | undefined;
  /** Calls `fn` at the start of each term (and at once if a term is in progress); returns an unsubscribe function. */
  onTerm(fn: (term: LeadershipTerm) => void): () => void;
  stop(): Promise<void>;
}
