/**
 * A binary min-heap of node indices ordered by the scorer's keys (k1, then
 * k2, then the seeded tie-break). The best node is at the top. Only the top
 * node ever changes while a request is placed (a replica lands on it), so
 * fixTop() re-sifts from the root: O(log n) per placement instead of a scan
 * or sort of every node per replica.
 */
import { compareTie } from './state.js';
import type { WorkingState } from './state.js';

export class NodeHeap {
  private readonly items: Int32Array;
  private length = 0;

  constructor(private readonly state: WorkingState) {
    this.items = new Int32Array(state.size);
  }

  get size(): number {
    return this.length;
  }

  /** True when node a ranks before node b. */
  private before(a: number, b: number): boolean {
    const s = this.state;
    const a1 = s.k1[a] as number;
    const b1 = s.k1[b] as number;
    if (a1 !== b1) return a1 < b1;
    const a2 = s.k2[a] as number;
    const b2 = s.k2[b] as number;
    if (a2 !== b2) return a2 < b2;
    return compareTie(s, a, b) < 0;
  }

  /** Adds nodes without ordering them; call heapify() after the last one. */
  append(i: number): void {
    this.items[this.length++] = i;
  }

  /** Orders everything appended, in O(n). */
  heapify(): void {
    for (let p = (this.length >> 1) - 1; p >= 0; p--) this.siftDown(p);
  }

  /** The best node; the heap must not be empty. */
  top(): number {
    return this.items[0] as number;
  }

  /** Removes the best node. */
  pop(): void {
    this.length--;
    if (this.length > 0) {
      this.items[0] = this.items[this.length] as number;
      this.siftDown(0);
    }
  }

  /** Restores order after the top node's keys changed. */
  fixTop(): void {
    this.siftDown(0);
  }

  private siftDown(start: number): void {
    const items = this.items;
    const n = this.length;
    let p = start;
    const node = items[p] as number;
    for (;;) {
      const l = 2 * p + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && this.before(items[r] as number, items[l] as number)) c = r;
      const child = items[c] as number;
      if (!this.before(child, node)) break;
      items[p] = child;
      p = c;
    }
    items[p] = node;
  }
}
