/**
 * What every verb receives: where to write, the global options, and the
 * error kinds the CLI tells apart (usage errors exit 2, everything else 1).
 *
 * This file and output.ts are loaded for every command, so they import no
 * libraries; verbs load gRPC, YAML and the generated clients when they run.
 */

export interface CliIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

export const processIO: CliIO = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
};

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

export interface CliContext {
  io: CliIO;
  /** host:port of the controller. */
  controller: string;
  debug: boolean;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Per-call deadline in milliseconds. */
  timeoutMs: number;
  out(text: string): void;
  /** Writes "debug: ..." lines to stderr when --log-level debug (or --debug). */
  trace(message: string): void;
}

/** Bad command line: wrong flag value, missing argument. Exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const DEFAULT_CONTROLLER = '127.0.0.1:7070';

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

export function parseControllerAddress(raw: string, source: string): string {
  const v = raw.trim();
  const m = HOST_PORT.exec(v);
  if (!m || Number(m[2]) > 65535 || Number(m[2]) === 0) {
    throw new UsageError(`${source}: expected HOST:PORT such as 127.0.0.1:7070, got "${raw}"`);
  }
  return v;
}

export interface GlobalOptions {
  controller?: string;
  debug?: boolean;
  logLevel?: string;
}

export function makeContext(io: CliIO, opts: GlobalOptions): CliContext {
  const controller = opts.controller !== undefined
    ? parseControllerAddress(opts.controller, '--controller')
    : io.env['BERTH_CONTROLLER'] ? parseControllerAddress(io.env['BERTH_CONTROLLER'], 'BERTH_CONTROLLER') : DEFAULT_CONTROLLER;
  const rawLevel = opts.logLevel ?? io.env['BERTH_LOG_LEVEL'] ?? (opts.debug ? 'debug' : 'warn');
  const level = rawLevel.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`${opts.logLevel !== undefined ? '--log-level' : 'BERTH_LOG_LEVEL'}: expected one of ${LOG_LEVELS.join(', ')}, got "${rawLevel}"`);
  }
  const logLevel = level as CliContext['logLevel'];
  return {
    io,
    controller,
    debug: Boolean(opts.debug),
    logLevel,
    timeoutMs: 30_000,
    out: (text) => {
      io.stdout.write(text.endsWith('\n') ? text : text + '\n');
    },
    trace: (message) => {
      if (logLevel === 'debug') io.stderr.write(`debug: ${message}\n`);
    },
  };
}
