/**
 * Container reports and pull progress on NATS.
 *
 * ContainerReporter: a full `ContainerReport` (every container of the node,
 * `full` set) when started and every `fullIntervalMs` (10 s), plus deltas of
 * the changes the source announces, so the controller learns state changes
 * at once and catches up from the next full report after anything it missed.
 * Changes are gathered for `deltaDelayMs` (10 ms) after the first one and go
 * out as one delta holding the latest state of each changed container (or its
 * id in `removed`): a node starting a batch of containers sends one message,
 * not two per container. A full report supersedes the changes gathered.
 *
 * PullProgressThrottle: passes at most one progress message per
 * `intervalMs` (100 ms, so at most 10 per second per pull) and always the
 * final one (`finished`), which is never dropped; the latest message waiting
 * is sent when the interval ends, so the last byte counts are not lost.
 */
import type { Container, PullProgress } from '../../proto/gen/berth/v1/types.js';
import type { ContainerReport } from '../../proto/gen/berth/v1/status.js';

export type ContainerChange = { container: Container; removed?: undefined } | { container?: undefined; removed: string };

/** Where the reporter reads containers from (the container manager). */
export interface ContainerSource {
  list(): Container[];
  watch(listener: (e: ContainerChange) => void): () => void;
}

export interface ReportSink {
  publishContainerReport(report: ContainerReport): boolean;
}

/** Most changes in one delta (a delta stays far below NATS' 1 MiB payload limit). */
export const MAX_DELTA_CONTAINERS = 200;

export class ContainerReporter {
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  /** Changes waiting for the next delta: the latest per container id. */
  private pending = new Map<string, ContainerChange>();
  private deltaTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly node: string,
    private readonly source: ContainerSource,
    private readonly sink: ReportSink,
    private readonly fullIntervalMs = 10_000,
    private readonly deltaDelayMs = 10,
  ) {}

  start(): void {
    this.unwatch = this.source.watch((e) => this.delta(e));
    this.full();
    this.timer = setInterval(() => this.full(), this.fullIntervalMs);
  }

  /** Publishes a full report now. */
  full(): void {
    // The full report carries the latest state of everything gathered so far.
    this.pending.clear();
    this.sink.publishContainerReport({ node: this.node, unixMs: Date.now(), full: true, containers: this.source.list(), removed: [] });
  }

  private delta(e: ContainerChange): void {
    const id = e.container ? e.container.id : e.removed;
    // Re-inserted so that the delta lists changes in the order of their latest state.
    this.pending.delete(id);
    this.pending.set(id, e);
    if (this.pending.size >= MAX_DELTA_CONTAINERS) this.flush();
    else this.deltaTimer ??= setTimeout(() => this.flush(), this.deltaDelayMs);
  }

  /** Publishes the gathered changes as one delta now. */
  flush(): void {
    if (this.deltaTimer) clearTimeout(this.deltaTimer);
    this.deltaTimer = undefined;
    if (this.pending.size === 0) return;
    const changes = [...this.pending.values()];
    this.pending.clear();
    const containers: Container[] = [];
    const removed: string[] = [];
    for (const c of changes) {
      if (c.container) containers.push(c.container);
      else removed.push(c.removed);
    }
    this.sink.publishContainerReport({ node: this.node, unixMs: Date.now(), full: false, containers, removed });
  }

  /** Stops reporting; changes still gathered go out first. */
  stop(): void {
    this.flush();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.unwatch?.();
    this.unwatch = undefined;
  }
}

export class PullProgressThrottle {
  private last = 0;
  private waiting: PullProgress | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: (p: PullProgress) => void,
    private readonly intervalMs = 100,
  ) {}

  push(p: PullProgress): void {
    if (p.finished) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.waiting = undefined;
      this.send(p);
      return;
    }
    const now = Date.now();
    if (now - this.last >= this.intervalMs && !this.timer) {
      this.last = now;
      this.send(p);
      return;
    }
    this.waiting = p;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const w = this.waiting;
      this.waiting = undefined;
      if (w) {
        this.last = Date.now();
        this.send(w);
      }
    }, Math.max(0, this.intervalMs - (now - this.last)));
  }
}
