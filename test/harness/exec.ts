/**
 * Running short host commands from test code (tar, umoci, skopeo, ip, nft):
 * output captured, a non-zero exit turned into an error that names the
 * command and keeps its stderr.
 */
import { spawn } from 'node:child_process';

export interface RunOptions {
  signal?: AbortSignal;
  /** Written to the command's stdin, then stdin is closed. */
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Upper bound in ms; the command is killed (SIGKILL) after it. Default 120 s. */
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Raised when a command cannot start, exits non-zero or is killed. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly code: number | null,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CommandError';
  }
}

function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** Runs `cmd args`, resolving with its output; rejects with CommandError on a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return tryRun(cmd, args, opts).then((res) => {
    if (res.code !== 0) {
      const text = describe(cmd, args);
      const err = res.stderr.trim() || res.stdout.trim();
      throw new CommandError(`command failed (exit ${res.code}): ${text}${err ? `: ${err.slice(-2000)}` : ''}`, text, res.code, res.stderr);
    }
    return res;
  });
}

/** Runs `cmd args` and resolves with its exit code and output whatever the code (still rejects when it cannot start). */
export function tryRun(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const text = describe(cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      signal: opts.signal,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    let failed: Error | undefined;
    child.on('error', (e) => {
      failed = e;
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (failed && (code === null || (failed as NodeJS.ErrnoException).code === 'ENOENT')) {
        reject(new CommandError(`failed to run ${text}: ${failed.message}`, text, null, stderr, { cause: failed }));
        return;
      }
      if (code === null) {
        reject(new CommandError(`command killed by ${signal ?? 'a signal'}: ${text}${stderr ? `: ${stderr.trim().slice(-2000)}` : ''}`, text, null, stderr));
        return;
      }
      resolve({ stdout, stderr, code });
    });
  });
}
