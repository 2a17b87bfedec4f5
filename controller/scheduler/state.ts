/**
 * The working state of one evaluation: the snapshot turned into flat typed
 * arrays (one slot per node), plus the compiled request. Placements made
 * during the evaluation update it, so later replicas of the same request see
 * them. Building it validates the input; nothing here mutates the snapshot.
 */
import { SchedulerInputError } from './errors.js';
import { seededHasher } from './random.js';
import type { ClusterSnapshot, NodeSnapshot, PlacementRequest, ResourceAmounts, VolumeLocation } from './types.js';

/** Most pending replicas one request may carry. */
export const MAX_REPLICAS_PER_REQUEST = 1_000_000;

/** A PlacementRequest after validation, in the shape the filters read. */
export interface CompiledRequest {
  readonly workload: string;
  readonly replicaIds: readonly string[];
  readonly cpuMillis: number;
  readonly memoryBytes: number;
  readonly pids: number;
  /** nodeSelector as [label, value] pairs. */
  readonly selector: ReadonlyArray<readonly [string, string]>;
  readonly spread: boolean;
  /** 0 = no limit. */
  readonly maxPerNode: number;
  /** Undefined = any node. */
  readonly requiredNodes: ReadonlySet<string> | undefined;
  /** Existing local volumes the replicas mount, with their nodes (empty = none). */
  readonly volumes: readonly VolumeLocation[];
}

/** Per-node arrays; index i is snapshot.nodes[i]. */
export interface WorkingState {
  readonly size: number;
  readonly nodes: readonly NodeSnapshot[];
  readonly capCpu: Float64Array;
  readonly capMem: Float64Array;
  readonly capPids: Float64Array;
  readonly usedCpu: Float64Array;
  readonly usedMem: Float64Array;
  readonly usedPids: Float64Array;
  /** Replicas of the request's workload on each node. */
  readonly count: Int32Array;
  /** Tie-break key from the evaluation id (see compareTie): smaller wins among equals. */
  readonly tie: Float64Array;
  /** Score keys written by the scorer; smaller is better, compared k1, then k2, then the tie-break. */
  readonly k1: Float64Array;
  readonly k2: Float64Array;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function fail(workload: string | undefined, field: string, expected: string, got: unknown): never {
  const what = workload === undefined ? 'replicas' : `workload "${workload}"`;
  throw new SchedulerInputError(`failed to schedule ${what}: ${field}: expected ${expected}, got ${describeValue(got)}`, {
    field,
    ...(workload === undefined ? {} : { workload }),
  });
}

function wholeNumber(workload: string | undefined, field: string, v: unknown, opts: { infinite?: boolean } = {}): number {
  if (isWhole(v, opts.infinite === true)) return v as number;
  return fail(workload, field, opts.infinite === true ? 'a whole number >= 0 or Infinity' : 'a whole number >= 0', v);
}

function isWhole(v: unknown, infinite: boolean): boolean {
  return typeof v === 'number' && v >= 0 && (Number.isSafeInteger(v) || (infinite && v === Infinity));
}

/** The fast form of amounts(): true when `r` is valid. */
function isAmounts(r: unknown, infinite: boolean): r is ResourceAmounts {
  if (typeof r !== 'object' || r === null) return false;
  const o = r as ResourceAmounts;
  return isWhole(o.cpuMillis, infinite) && isWhole(o.memoryBytes, infinite) && isWhole(o.pids, infinite);
}

/** Validates resource amounts; throws naming the first bad field. */
function amounts(workload: string | undefined, field: string, r: unknown, opts: { infinite?: boolean } = {}): ResourceAmounts {
  if (typeof r !== 'object' || r === null) return fail(workload, field, 'an object with cpuMillis, memoryBytes and pids', r);
  const o = r as Record<string, unknown>;
  return {
    cpuMillis: wholeNumber(workload, `${field}.cpuMillis`, o['cpuMillis'], opts),
    memoryBytes: wholeNumber(workload, `${field}.memoryBytes`, o['memoryBytes'], opts),
    pids: wholeNumber(workload, `${field}.pids`, o['pids'], opts),
  };
}

/** Validates a request against the snapshot and compiles it. */
export function compileRequest(snapshot: ClusterSnapshot, request: PlacementRequest): CompiledRequest {
  if (typeof request !== 'object' || request === null) fail(undefined, 'request', 'an object', request);
  const workload = request.workload;
  if (typeof workload !== 'string' || workload === '') fail(undefined, 'request.workload', 'a non-empty string', workload);
  if (typeof snapshot !== 'object' || snapshot === null || !Array.isArray(snapshot.nodes) || !Array.isArray(snapshot.replicas)) {
    fail(workload, 'snapshot', 'an object with nodes and replicas lists', snapshot);
  }

  let replicaIds: string[];
  if (typeof request.replicas === 'number') {
    const n = request.replicas;
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_REPLICAS_PER_REQUEST) {
      fail(workload, 'request.replicas', `a whole number from 0 to ${MAX_REPLICAS_PER_REQUEST} or a list of replica ids`, n);
    }
    replicaIds = Array.from({ length: n }, (_, i) => String(i));
  } else if (Array.isArray(request.replicas)) {
    const ids = request.replicas as readonly unknown[];
    if (ids.length > MAX_REPLICAS_PER_REQUEST) {
      fail(workload, 'request.replicas', `at most ${MAX_REPLICAS_PER_REQUEST} replica ids`, `${ids.length} ids`);
    }
    const seen = new Set<string>();
    replicaIds = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (typeof id !== 'string' || id === '') fail(workload, `request.replicas[${i}]`, 'a non-empty replica id', id);
      if (seen.has(id)) fail(workload, `request.replicas[${i}]`, 'a replica id not listed before', id);
      seen.add(id);
      replicaIds.push(id);
    }
    // A pending replica must not already sit on a node: placing it again
    // would run it twice.
    if (seen.size > 0) {
      for (const r of snapshot.replicas) {
        if (r.workload === workload && r.node !== undefined && seen.has(r.replica)) {
          throw new SchedulerInputError(
            `failed to schedule workload "${workload}": request.replicas: replica "${r.replica}" is already placed on node "${r.node}"; expected only pending replicas`,
            { field: 'request.replicas', workload },
          );
        }
      }
    }
  } else {
    return fail(workload, 'request.replicas', 'a whole number or a list of replica ids', request.replicas);
  }

  const res = amounts(workload, 'request.resources', request.resources);

  const p = request.placement ?? {};
  if (typeof p !== 'object' || p === null) fail(workload, 'request.placement', 'an object', p);
  const selector: Array<readonly [string, string]> = [];
  if (p.nodeSelector !== undefined) {
    if (typeof p.nodeSelector !== 'object' || p.nodeSelector === null || Array.isArray(p.nodeSelector)) {
      fail(workload, 'request.placement.nodeSelector', 'a map of label to value', p.nodeSelector);
    }
    for (const [k, v] of Object.entries(p.nodeSelector)) {
      if (typeof v !== 'string') fail(workload, `request.placement.nodeSelector.${k}`, 'a string label value', v);
      selector.push([k, v]);
    }
  }
  if (p.spread !== undefined && typeof p.spread !== 'boolean') {
    fail(workload, 'request.placement.spread', 'true or false', p.spread);
  }
  const maxPerNode = p.maxPerNode === undefined ? 0 : wholeNumber(workload, 'request.placement.maxPerNode', p.maxPerNode);

  let requiredNodes: Set<string> | undefined;
  if (request.requiredNodes !== undefined) {
    if (!Array.isArray(request.requiredNodes) || request.requiredNodes.length === 0) {
      fail(workload, 'request.requiredNodes', 'a non-empty list of node names (omit it to allow any node)', request.requiredNodes);
    }
    requiredNodes = new Set();
    request.requiredNodes.forEach((n, i) => {
      if (typeof n !== 'string' || n === '') fail(workload, `request.requiredNodes[${i}]`, 'a non-empty node name', n);
      requiredNodes?.add(n);
    });
  }

  const volumes: VolumeLocation[] = [];
  if (request.volumes !== undefined) {
    if (!Array.isArray(request.volumes)) fail(workload, 'request.volumes', 'a list of { name, node }', request.volumes);
    request.volumes.forEach((v: unknown, i) => {
      const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
      if (typeof o['name'] !== 'string' || o['name'] === '') fail(workload, `request.volumes[${i}].name`, 'a non-empty volume name', o['name']);
      if (typeof o['node'] !== 'string' || o['node'] === '') fail(workload, `request.volumes[${i}].node`, 'a non-empty node name', o['node']);
      volumes.push({ name: o['name'], node: o['node'] });
    });
  }

  return {
    workload,
    replicaIds,
    cpuMillis: res.cpuMillis,
    memoryBytes: res.memoryBytes,
    pids: res.pids,
    selector,
    spread: p.spread ?? true,
    maxPerNode,
    requiredNodes,
    volumes,
  };
}

/**
 * Node name -> index, an open-addressing table keyed by the tie-break hashes
 * already computed for each node (cheaper than a Map built per evaluation).
 */
class NameTable {
  private readonly slots: Int32Array; // node index + 1; 0 = empty
  private readonly mask: number;

  constructor(
    private readonly nodes: readonly NodeSnapshot[],
    private readonly tie: Float64Array,
    private readonly hash: (name: string) => number,
  ) {
    let cap = 2;
    while (cap < nodes.length * 2) cap *= 2;
    this.slots = new Int32Array(cap);
    this.mask = cap - 1;
  }

  /** Adds node i (its tie must be set); false when its name is there already. */
  add(i: number): boolean {
    const h = this.tie[i] as number;
    const name = (this.nodes[i] as NodeSnapshot).name;
    let s = h & this.mask;
    for (let j = this.slots[s] as number; j !== 0; j = this.slots[s] as number) {
      if (this.tie[j - 1] === h && (this.nodes[j - 1] as NodeSnapshot).name === name) return false;
      s = (s + 1) & this.mask;
    }
    this.slots[s] = i + 1;
    return true;
  }

  /** The index of the node named `name`, or -1. */
  find(name: string): number {
    const h = this.hash(name);
    let s = h & this.mask;
    for (let j = this.slots[s] as number; j !== 0; j = this.slots[s] as number) {
      if (this.tie[j - 1] === h && (this.nodes[j - 1] as NodeSnapshot).name === name) return j - 1;
      s = (s + 1) & this.mask;
    }
    return -1;
  }
}

/**
 * Builds the working state for `workload`: capacities, allocations (given,
 * or summed from snapshot.replicas), this workload's replica count per node,
 * and each node's tie-break key under `evalId`.
 */
export function buildState(snapshot: ClusterSnapshot, workload: string, evalId: string): WorkingState {
  if (typeof evalId !== 'string' || evalId === '') fail(workload, 'opts.evalId', 'a non-empty evaluation id', evalId);
  if (typeof snapshot !== 'object' || snapshot === null || !Array.isArray(snapshot.nodes) || !Array.isArray(snapshot.replicas)) {
    fail(workload, 'snapshot', 'an object with nodes and replicas lists', snapshot);
  }
  const nodes = snapshot.nodes;
  const size = nodes.length;
  const state: WorkingState = {
    size,
    nodes,
    capCpu: new Float64Array(size),
    capMem: new Float64Array(size),
    capPids: new Float64Array(size),
    usedCpu: new Float64Array(size),
    usedMem: new Float64Array(size),
    usedPids: new Float64Array(size),
    count: new Int32Array(size),
    tie: new Float64Array(size),
    k1: new Float64Array(size),
    k2: new Float64Array(size),
  };
  const hash = seededHasher(evalId);
  const index = new NameTable(nodes, state.tie, hash);
  const derived: boolean[] = new Array<boolean>(size);
  let anyDerived = false;
  // Fast checks first; field paths are only spelled out (by the slow
  // validators, which throw) when something is wrong.
  for (let i = 0; i < size; i++) {
    const n = nodes[i] as NodeSnapshot;
    if (typeof n !== 'object' || n === null) fail(workload, `snapshot.nodes[${i}]`, 'a node', n);
    if (typeof n.name !== 'string' || n.name === '') fail(workload, `snapshot.nodes[${i}].name`, 'a non-empty node name', n.name);
    // Tie-break key: a hash of (evalId, name). A node's key depends only on
    // its own name, so adding a node does not reshuffle the others; equal
    // keys (astronomically rare) are settled by the name (see compareTie).
    state.tie[i] = hash(n.name);
    if (!index.add(i)) fail(workload, `snapshot.nodes[${i}].name`, 'a node name not used by an earlier node', n.name);
    const cap = n.capacity;
    if (!isAmounts(cap, true)) amounts(workload, `snapshot.nodes[${i}].capacity`, cap, { infinite: true });
    state.capCpu[i] = cap.cpuMillis;
    state.capMem[i] = cap.memoryBytes;
    state.capPids[i] = cap.pids;
    const a = n.allocated;
    if (a !== undefined) {
      if (!isAmounts(a, false)) amounts(workload, `snapshot.nodes[${i}].allocated`, a);
      state.usedCpu[i] = a.cpuMillis;
      state.usedMem[i] = a.memoryBytes;
      state.usedPids[i] = a.pids;
      derived[i] = false;
    } else {
      derived[i] = true;
      anyDerived = true;
    }
  }
  const replicas = snapshot.replicas;
  for (let j = 0; j < replicas.length; j++) {
    const r = replicas[j];
    if (r === undefined || r.node === undefined) continue;
    if (typeof r.node !== 'string') fail(workload, `snapshot.replicas[${j}].node`, 'a node name, or no node for a pending replica', r.node);
    // When every node states its allocation, only this workload's replicas matter.
    if (!anyDerived && r.workload !== workload) continue;
    const i = index.find(r.node);
    // A replica on a node the snapshot does not list holds nothing here.
    if (i < 0) continue;
    if (r.workload === workload) state.count[i] = (state.count[i] as number) + 1;
    if (derived[i] === true) {
      const res = r.resources;
      if (!isAmounts(res, false)) amounts(workload, `snapshot.replicas[${j}].resources`, res);
      state.usedCpu[i] = (state.usedCpu[i] as number) + res.cpuMillis;
      state.usedMem[i] = (state.usedMem[i] as number) + res.memoryBytes;
      state.usedPids[i] = (state.usedPids[i] as number) + res.pids;
    }
  }
  return state;
}

/**
 * Orders two nodes that score the same: by their seeded tie-break key, then
 * by name. Negative when node a wins.
 */
export function compareTie(state: WorkingState, a: number, b: number): number {
  const d = (state.tie[a] as number) - (state.tie[b] as number);
  if (d !== 0) return d;
  const na = (state.nodes[a] as NodeSnapshot).name;
  const nb = (state.nodes[b] as NodeSnapshot).name;
  return na < nb ? -1 : na > nb ? 1 : 0;
}

/** Records one replica of the request on node `i`. */
export function place(state: WorkingState, i: number, req: CompiledRequest): void {
  state.usedCpu[i] = (state.usedCpu[i] as number) + req.cpuMillis;
  state.usedMem[i] = (state.usedMem[i] as number) + req.memoryBytes;
  state.usedPids[i] = (state.usedPids[i] as number) + req.pids;
  state.count[i] = (state.count[i] as number) + 1;
}
