/**
 * Program configuration from three sources, highest first: command-line flags,
 * environment variables, a YAML config file. Each setting is declared once with
 * its flag name, environment variable, file key, parser and default, so the
 * precedence rule lives here and nowhere else.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError, messageOf } from './errors.js';

export interface Setting<T> {
  /** Long flag name without dashes, e.g. `etcd`. Also the camelCase key of parsed flags. */
  flag: string;
  /** Environment variable, e.g. `BERTH_ETCD`. */
  env?: string;
  /** Key in the config file; defaults to the flag name. */
  key?: string;
  parse: (raw: string, source: string) => T;
  default: T;
}

export type Settings = Record<string, Setting<unknown>>;
export type Resolved<S extends Settings> = { [K in keyof S]: S[K] extends Setting<infer T> ? T : never };

export interface ConfigSources {
  /** Flags as parsed by the CLI library (undefined when not given). */
  flags: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Path of a YAML file whose top-level keys are setting keys. */
  file?: string;
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Reads a YAML config file into a flat map; errors name the file. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`failed to read config file "${path}": ${messageOf(err)}`, { field: 'config', cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new InvalidArgumentError(`failed to parse config file "${path}": ${messageOf(err)}`, { field: 'config', cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new InvalidArgumentError(`config file "${path}": expected a mapping of setting names to values`, { field: 'config' });
  }
  return doc as Record<string, unknown>;
}

export function resolveConfig<S extends Settings>(settings: S, sources: ConfigSources): Resolved<S> {
  const env = sources.env ?? process.env;
  const file = sources.file ? readConfigFile(sources.file) : {};
  const known = new Set(Object.values(settings).map((s) => s.key ?? s.flag));
  for (const k of Object.keys(file)) {
    if (!known.has(k)) {
      throw new InvalidArgumentError(`config file "${sources.file}": unknown setting "${k}"; expected one of ${[...known].sort().join(', ')}`, { field: k });
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(settings)) {
    const flagValue = sources.flags[camel(s.flag)];
    if (flagValue !== undefined) {
      out[name] = typeof flagValue === 'string' ? s.parse(flagValue, `--${s.flag}`) : flagValue;
      continue;
    }
    const envValue = s.env ? env[s.env] : undefined;
    if (envValue !== undefined && envValue !== '') {
      out[name] = s.parse(envValue, s.env as string);
      continue;
    }
    const fileValue = file[s.key ?? s.flag];
    if (fileValue !== undefined && fileValue !== null) {
      out[name] = s.parse(String(fileValue), `${sources.file}: ${s.key ?? s.flag}`);
      continue;
    }
    out[name] = s.default;
  }
  return out as Resolved<S>;
}

/** Parser helpers for settings. */
export const parsers = {
  string: (raw: string): string => raw,
  port: (raw: string, source: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 65535) {
      throw new InvalidArgumentError(`${source}: expected a port number from 0 to 65535, got "${raw}"`, { field: source });
    }
    return n;
  },
  positiveInt: (raw: string, source: string): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0) {
      throw new InvalidArgumentError(`${source}: expected a whole number above 0, got "${raw}"`, { field: source });
    }
    return n;
  },
  /** host:port, as in `127.0.0.1:7070`. */
  hostPort: (raw: string, source: string): string => {
    const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim());
    if (!m || Number(m[2]) > 65535) {
      throw new InvalidArgumentError(`${source}: expected HOST:PORT such as 127.0.0.1:7070, got "${raw}"`, { field: source });
    }
    return raw.trim();
  },
  /** A URL list separated by commas, e.g. etcd endpoints. */
  urlList: (raw: string, source: string): string[] => {
    const parts = raw.split(',').map((s) => s.trim()).filter(Boolean);
    if (parts.length === 0) throw new InvalidArgumentError(`${source}: expected one or more URLs, got "${raw}"`, { field: source });
    for (const p of parts) {
      try {
        new URL(p);
      } catch {
        throw new InvalidArgumentError(`${source}: expected a URL such as http://127.0.0.1:2379, got "${p}"`, { field: source });
      }
    }
    return parts;
  },
  /** key=value,key=value labels. */
  labels: (raw: string, source: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const part of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      const i = part.indexOf('=');
      if (i <= 0) throw new InvalidArgumentError(`${source}: expected key=value pairs separated by commas, got "${part}"`, { field: source });
      out[part.slice(0, i)] = part.slice(i + 1);
    }
    return out;
  },
};
