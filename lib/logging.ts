/**
 * Logging setup. Programs build one root logger in main.ts and hand
 * `logger.child({ component })` to each module; modules never create loggers.
 * Message text is fixed; facts go in fields (`workload`, `nodeId`, ...).
 */
import winston from 'winston';

export type Logger = winston.Logger;

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level?: string;
  /** Human-readable lines instead of JSON; defaults to whether stderr is a TTY. */
  pretty?: boolean;
  /** Fields on every line, e.g. `{ program: 'controller' }`. */
  defaultMeta?: Record<string, unknown>;
  /** Where lines go; stderr by default. */
  stream?: NodeJS.WritableStream;
}

/** Parses a log level; throws a message that names the allowed values. */
export function parseLogLevel(value: string, source = '--log-level'): LogLevel {
  const v = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new Error(`${source}: expected one of ${LOG_LEVELS.join(', ')}, got "${value}"`);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = parseLogLevel(options.level ?? process.env['BERTH_LOG_LEVEL'] ?? 'info',
    options.level !== undefined ? '--log-level' : 'BERTH_LOG_LEVEL');
  const stream = options.stream ?? process.stderr;
  const pretty = options.pretty ?? Boolean((stream as NodeJS.WriteStream).isTTY);
  const format = pretty
    ? winston.format.combine(
        winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
        winston.format.printf((info) => {
          const { level: lvl, message, timestamp, ...rest } = info;
          const fields = Object.entries(rest)
            .filter(([k]) => typeof k === 'string')
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          return `${String(timestamp)} ${lvl.padEnd(5)} ${String(message)}${fields ? ' ' + fields : ''}`;
        }),
      )
    : winston.format.combine(winston.format.timestamp(), winston.format.json());
  return winston.createLogger({
    level,
    levels: winston.config.npm.levels,
    format,
    defaultMeta: options.defaultMeta,
    transports: [new winston.transports.Stream({ stream })],
  });
}

/** A logger that drops everything; for tests and library defaults. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
