/**
 * Heartbeat bookkeeping, without I/O: which nodes were heard from and when, and
 * whether each is Ready (a heartbeat in the last READY_WINDOW_MS) or NotReady.
 * Times are this controller's clock at receipt, so agents' clocks do not matter.
 */
import { NodeState } from '../../proto/gen/berth/v1/types.js';
import type { Heartbeat } from '../../proto/gen/berth/v1/status.js';

/** How often agents publish (returned by NodeService.Register). */
export const HEARTBEAT_INTERVAL_MS = 1000;
/** A node is Ready while its last heartbeat is younger than this. */
export const READY_WINDOW_MS = 5000;
/** How often states are re-evaluated. */
export const CHECK_INTERVAL_MS = 500;

export interface LiveStatus {
  state: NodeState;
  /** Receipt time of the last heartbeat (this controller's clock), 0 when none since start. */
  lastHeartbeatUnixMs: number;
  /** Why the node is NotReady; empty when Ready. */
  reason: string;
  containers: number;
  /** The agent process that sent the last heartbeat. */
  instance: string;
}

interface Seen {
  receivedUnixMs: number;
  seq: number;
  instance: string;
  containers: number;
}

export class HeartbeatTracker {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly startedUnixMs: number,
    private readonly windowMs: number = READY_WINDOW_MS,
  ) {}

  /** Records a heartbeat; returns false when it is older than one already seen from the same agent process. */
  observe(node: string, hb: Heartbeat, receivedUnixMs: number): boolean {
    const prev = this.seen.get(node);
    if (prev && prev.instance === hb.instance && hb.seq <= prev.seq && receivedUnixMs - prev.receivedUnixMs < this.windowMs) {
      return false;
    }
    this.seen.set(node, { receivedUnixMs, seq: hb.seq, instance: hb.instance, containers: hb.containers });
    return true;
  }

  status(node: string, now: number): LiveStatus {
    const s = this.seen.get(node);
    if (!s) {
      return {
        state: NodeState.NODE_STATE_NOT_READY,
        lastHeartbeatUnixMs: 0,
        reason: `no heartbeat since the controller started ${Math.round((now - this.startedUnixMs) / 1000)} s ago`,
        containers: 0,
        instance: '',
      };
    }
    const age = now - s.receivedUnixMs;
    const ready = age < this.windowMs;
    return {
      state: ready ? NodeState.NODE_STATE_READY : NodeState.NODE_STATE_NOT_READY,
      lastHeartbeatUnixMs: s.receivedUnixMs,
      reason: ready ? '' : `no heartbeat for ${Math.floor(age / 1000)} s`,
      containers: s.containers,
      instance: s.instance,
    };
  }

  /** Names heard from since start. */
  nodes(): string[] {
    return [...this.seen.keys()];
  }
}
