/**
 * Child processes started by tests: spawned with a temp dir, stopped by PID,
 * and tracked so that the root hooks can kill anything a failed test left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, createWriteStream, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Temp dir owned by this process (data, config, log); removed by stop(). */
  readonly dir: string;
  readonly logFile: string;
  /** SIGTERM, then SIGKILL after graceMs; removes the temp dir. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once, keeping the temp dir (for crash tests); stop() still cleans up. */
  kill9(): Promise<void>;
  exited(): boolean;
}

const live = new Set<ManagedProcess>();

/** Everything started and not yet stopped; the root hooks stop these after the run. */
export function liveProcesses(): ManagedProcess[] {
  return [...live];
}

export function makeTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `berth-test-${prefix}-`));
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

export interface StartOptions {
  name: string;
  command: string;
  args: (dir: string) => string[];
  env?: NodeJS.ProcessEnv;
  /** Reuse this dir instead of making one (restart after kill9). */
  dir?: string;
}

export function startProcess(opts: StartOptions): ManagedProcess {
  const dir = opts.dir ?? makeTempDir(opts.name);
  const logFile = join(dir, `${opts.name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(opts.command, opts.args(dir), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on('error', () => undefined);
  if (child.pid === undefined) {
    throw new Error(`failed to start ${opts.name}: "${opts.command}" could not be spawned (is it installed?)`);
  }
  const pid = child.pid;
  let stopped = false;
  const proc: ManagedProcess = {
    name: opts.name,
    pid,
    child,
    dir,
    logFile,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async kill9() {
      if (!proc.exited()) {
        child.kill('SIGKILL');
        await waitExit(child, 5000);
      }
    },
    async stop(graceMs = 5000) {
      if (stopped) return;
      stopped = true;
      live.delete(proc);
      if (!proc.exited()) {
        child.kill('SIGTERM');
        if (!(await waitExit(child, graceMs))) {
          child.kill('SIGKILL');
          await waitExit(child, 5000);
        }
      }
      log.end();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(proc);
  return proc;
}

/** The last lines of a process's log, for error messages. */
export function tailLog(p: ManagedProcess, lines = 20): string {
  if (!existsSync(p.logFile)) return '';
  return readFileSync(p.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
}

/** Polls `check` until it returns true; throws a message naming `what` after timeoutMs. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const why = lastErr instanceof Error ? `: ${lastErr.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
