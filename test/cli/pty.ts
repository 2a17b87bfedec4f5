/**
 * Driving the built `berth` program through a real pseudo-terminal
 * (node-pty), for the interactive verbs: what it prints is collected, keys
 * are typed, the window can be resized, and its exit code is awaited.
 */
import { spawn, type IPty } from 'node-pty';
import { BERTH_JS, cleanEnv } from './helpers.js';

export interface PtySession {
  /** Everything printed so far (raw, except that runs of CR before LF are one CR). */
  readonly output: string;
  /** Types text (use "\r" for Enter, "\x04" for Ctrl-D). */
  type(text: string): void;
  resize(cols: number, rows: number): void;
  /**
   * Waits until the output after `from` (an index into `output`, default 0)
   * matches; returns the index just after the match.
   */
  expect(pattern: RegExp, options?: { from?: number; timeoutMs?: number }): Promise<number>;
  /** Resolves with the exit code (rejects after timeoutMs, killing it). */
  exited(timeoutMs?: number): Promise<number>;
  kill(): void;
}

/** Runs `node berth.cjs ARGS` in a new pty of the given size. */
export function berthInPty(args: string[], options: { controller: string; cols?: number; rows?: number }): PtySession {
  const p: IPty = spawn(process.execPath, [BERTH_JS, ...args], {
    name: 'xterm',
    cols: options.cols ?? 100,
    rows: options.rows ?? 30,
    env: cleanEnv({ BERTH_CONTROLLER: options.controller, TERM: 'xterm' }) as Record<string, string>,
  });
  let output = '';
  let exitCode: number | undefined;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  p.onData((d) => {
    // This terminal adds a CR to the container terminal's CR LF (Node's raw mode keeps ONLCR): one CR LF is kept.
    output = (output + d).replace(/\r+\n/g, '\r\n');
    wake();
  });
  p.onExit((e) => {
    exitCode = e.exitCode;
    wake();
  });
  const until = <T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> => new Promise((resolve, reject) => {
    const tryIt = (): boolean => {
      let v: T | undefined;
      try {
        v = check();
      } catch (err) {
        waiters.delete(tryIt2);
        clearTimeout(t);
        reject(err as Error);
        return true;
      }
      if (v === undefined) return false;
      waiters.delete(tryIt2);
      clearTimeout(t);
      resolve(v);
      return true;
    };
    const tryIt2 = (): void => void tryIt();
    const t = setTimeout(() => {
      waiters.delete(tryIt2);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; output so far:\n${JSON.stringify(output)}`));
    }, timeoutMs);
    waiters.add(tryIt2);
    tryIt();
  });
  return {
    get output() {
      return output;
    },
    type: (text) => p.write(text),
    resize: (cols, rows) => p.resize(cols, rows),
    expect: (pattern, o = {}) => until(`${pattern}`, () => {
      const from = o.from ?? 0;
      const m = pattern.exec(output.slice(from));
      if (!m) {
        if (exitCode !== undefined) throw new Error(`berth exited (${exitCode}) before printing ${pattern}; output:\n${JSON.stringify(output)}`);
        return undefined;
      }
      return from + m.index + m[0].length;
    }, o.timeoutMs ?? 30_000),
    exited: async (timeoutMs = 30_000) => {
      try {
        return await until('berth to exit', () => exitCode, timeoutMs);
      } catch (err) {
        p.kill('SIGKILL');
        throw err;
      }
    },
    kill: () => {
      if (exitCode === undefined) p.kill('SIGKILL');
    },
  };
}
