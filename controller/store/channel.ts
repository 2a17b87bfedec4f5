/**
 * A small unbounded queue exposed as an async iterable: producers push values or
 * an error, the consumer iterates; the iteration ends when the signal fires or
 * close() is called. Used to turn watch callbacks into `for await` loops.
 */
export class Channel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((r: IteratorResult<T>) => void) | undefined;
  private failWaiting: ((err: unknown) => void) | undefined;
  private done = false;
  private error: unknown;
  private readonly onClose: (() => void)[] = [];

  constructor(signal?: AbortSignal) {
    if (signal) {
      if (signal.aborted) this.done = true;
      else signal.addEventListener('abort', () => this.close(), { once: true });
    }
  }

  /** Runs `fn` once when the channel closes (for releasing a watcher). */
  onClosed(fn: () => void): void {
    if (this.done) fn();
    else this.onClose.push(fn);
  }

  push(item: T): void {
    if (this.done) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      this.failWaiting = undefined;
      w({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  fail(err: unknown): void {
    if (this.done) return;
    this.error = err;
    if (this.failWaiting) {
      const f = this.failWaiting;
      this.waiting = undefined;
      this.failWaiting = undefined;
      f(err);
    }
    this.close();
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      this.failWaiting = undefined;
      w({ value: undefined, done: true });
    }
    for (const fn of this.onClose.splice(0)) fn();
  }

  get closed(): boolean {
    return this.done;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.error !== undefined) {
          const err = this.error;
          this.error = undefined;
          return Promise.reject(err);
        }
        if (this.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<T>>((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
