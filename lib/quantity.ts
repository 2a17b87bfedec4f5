/**
 * Resource quantities: CPU, memory and process counts.
 *
 * Vocabulary:
 * - CPU amounts are held as millicores (thousandths of a core). Written as a
 *   number of cores (`2`, `0.5`, `"1.25"`) or millicores (`"500m"`). Anything
 *   finer than one millicore is refused rather than rounded.
 * - Memory sizes are held as bytes. Written as a whole number of bytes
 *   (`1048576`, `"1048576"`) or a number with a unit: binary `Ki Mi Gi Ti`
 *   (powers of 1024) or decimal `k M G T` (powers of 1000), e.g. `"64Mi"`,
 *   `"1.5Gi"`, `"512M"`. A result that is not a whole number of bytes is
 *   refused. A lone `m` is refused as ambiguous (Docker reads it as mebibytes,
 *   Kubernetes as thousandths).
 * - Pids limits are whole numbers of processes.
 * In every case 0 means "not set" (no limit, no reservation).
 *
 * Each kind has a `check*` function that returns the value or a problem text
 * (for validators that collect many problems) and a `parse*` function that
 * throws InvalidArgumentError with the field name in front (for CLI flags such
 * as `berth run -m 64Mi --cpus 0.5 --pids-limit 100`). Both accept strings and
 * JavaScript numbers, since YAML and flags produce either.
 */
import { InvalidArgumentError } from './errors.js';

/** Either the parsed value or a description of what was wrong. */
export type QuantityResult = { ok: true; value: number } | { ok: false; problem: string };

/** Largest CPU amount accepted: 100000 cores. */
export const MAX_CPU_MILLIS = 100_000_000;
/** Largest memory size accepted: the largest exactly representable byte count. */
export const MAX_MEMORY_BYTES = Number.MAX_SAFE_INTEGER;
/** Largest pids limit accepted (the kernel's PID_MAX_LIMIT). */
export const MAX_PIDS = 4_194_304;

const MAX_INPUT_LENGTH = 64;

const MEMORY_UNITS: Readonly<Record<string, bigint>> = {
  '': 1n,
  k: 1000n,
  M: 1000n ** 2n,
  G: 1000n ** 3n,
  T: 1000n ** 4n,
  Ki: 1024n,
  Mi: 1024n ** 2n,
  Gi: 1024n ** 3n,
  Ti: 1024n ** 4n,
};

const CPU_EXPECTED = 'expected a CPU amount in cores or millicores such as 2, "0.5" or "500m"';
const MEMORY_EXPECTED =
  'expected a size in bytes such as 1048576, "64Mi", "1Gi" or "512M" (units Ki, Mi, Gi, Ti, k, M, G, T)';
const PIDS_EXPECTED = `expected a whole number of processes from 0 to ${MAX_PIDS}`;

/** Quotes a value for a message: strings as JSON, numbers as their text in quotes. */
function shown(value: unknown): string {
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 37)}...` : value);
  }
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `"${String(value)}"`;
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `a ${typeof value}`;
}

/**
 * Text of a number or string input, or a problem. Numbers are turned into
 * their shortest decimal text; exponent forms are refused later by the callers'
 * grammars, which is what we want for values like 1e-7.
 */
function inputText(value: unknown, expected: string): { ok: true; text: string } | { ok: false; problem: string } {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return { ok: false, problem: `${expected}, got ${shown(value)}` };
    return { ok: true, text: String(value) };
  }
  if (typeof value !== 'string') {
    const kind = typeof value === 'boolean' ? `the boolean ${shown(value)}` : shown(value);
    return { ok: false, problem: `${expected}, got ${kind}` };
  }
  if (value.length > MAX_INPUT_LENGTH) {
    return { ok: false, problem: `${expected}, got a ${value.length}-character string` };
  }
  if (value !== value.trim() || value === '') return { ok: false, problem: `${expected}, got ${shown(value)}` };
  return { ok: true, text: value };
}

/** Splits "12.345" into integer digits and fraction digits. */
const DECIMAL = /^([0-9]+)(?:\.([0-9]+))?$/;

/** CPU amount in millicores. */
export function checkCpu(value: unknown): QuantityResult {
  const input = inputText(value, CPU_EXPECTED);
  if (!input.ok) return input;
  const text = input.text;
  const bad = (why = ''): QuantityResult => ({ ok: false, problem: `${CPU_EXPECTED}${why}, got ${shown(value)}` });
  if (text.startsWith('-')) return bad(' (not negative)');
  let millis: bigint;
  if (text.endsWith('m')) {
    const digits = text.slice(0, -1);
    if (!/^[0-9]+$/.test(digits)) {
      return DECIMAL.test(digits) ? bad(' (millicores are whole numbers)') : bad();
    }
    millis = BigInt(digits);
  } else {
    const m = DECIMAL.exec(text);
    if (!m) return bad();
    const whole = BigInt(m[1] ?? '0');
    const frac = (m[2] ?? '').replace(/0+$/, '');
    if (frac.length > 3) return bad(' (at most 3 decimal places: 1 millicore is the smallest unit)');
    millis = whole * 1000n + BigInt(frac.padEnd(3, '0') || '0');
  }
  if (millis > BigInt(MAX_CPU_MILLIS)) return bad(` (at most ${MAX_CPU_MILLIS / 1000} cores)`);
  return { ok: true, value: Number(millis) };
}

/** Memory size in bytes. */
export function checkMemory(value: unknown): QuantityResult {
  const input = inputText(value, MEMORY_EXPECTED);
  if (!input.ok) return input;
  const text = input.text;
  const bad = (why = ''): QuantityResult => ({ ok: false, problem: `${MEMORY_EXPECTED}${why}, got ${shown(value)}` });
  if (text.startsWith('-')) return bad(' (not negative)');
  const m = /^([0-9]+)(?:\.([0-9]+))?([A-Za-z]*)$/.exec(text);
  if (!m) return bad();
  const unitText = m[3] ?? '';
  const unit = MEMORY_UNITS[unitText];
  if (unit === undefined) {
    if (unitText === 'm') return bad(' ("m" is ambiguous: write "Mi" for mebibytes or "M" for megabytes)');
    const lower = unitText.toLowerCase();
    const hint = ['ki', 'mi', 'gi', 'ti'].includes(lower)
      ? ` (units are case-sensitive: did you mean "${lower[0]?.toUpperCase()}i"?)`
      : ['kb', 'mb', 'gb', 'tb', 'kib', 'mib', 'gib', 'tib', 'b'].includes(lower)
        ? ' (write the unit without "B", e.g. "64Mi" or "64M")'
        : ` (unknown unit ${JSON.stringify(unitText)})`;
    return bad(hint);
  }
  const whole = BigInt(m[1] ?? '0');
  const fracDigits = m[2] ?? '';
  const scale = 10n ** BigInt(fracDigits.length);
  const numerator = (whole * scale + BigInt(fracDigits || '0')) * unit;
  if (numerator % scale !== 0n) return bad(' (the result must be a whole number of bytes)');
  const bytes = numerator / scale;
  if (bytes > BigInt(MAX_MEMORY_BYTES)) return bad(' (too large)');
  return { ok: true, value: Number(bytes) };
}

/** Pids limit: a whole number of processes. */
export function checkPids(value: unknown): QuantityResult {
  const input = inputText(value, PIDS_EXPECTED);
  if (!input.ok) return input;
  if (!/^[0-9]+$/.test(input.text)) return { ok: false, problem: `${PIDS_EXPECTED}, got ${shown(value)}` };
  const n = Number(input.text);
  if (n > MAX_PIDS) return { ok: false, problem: `${PIDS_EXPECTED}, got ${shown(value)}` };
  return { ok: true, value: n };
}

function orThrow(result: QuantityResult, field: string): number {
  if (result.ok) return result.value;
  throw new InvalidArgumentError(`${field}: ${result.problem}`, { field });
}

/** Parses a CPU amount into millicores; throws InvalidArgumentError naming `field`. */
export function parseCpu(value: string | number, field = 'cpu'): number {
  return orThrow(checkCpu(value), field);
}

/** Parses a memory size into bytes; throws InvalidArgumentError naming `field`. */
export function parseMemory(value: string | number, field = 'memory'): number {
  return orThrow(checkMemory(value), field);
}

/** Parses a pids limit; throws InvalidArgumentError naming `field`. */
export function parsePids(value: string | number, field = 'pids'): number {
  return orThrow(checkPids(value), field);
}

/** Millicores as text: "500m", or whole/decimal cores ("2", "1.5") when exact. */
export function formatCpu(millis: number): string {
  if (millis % 1000 === 0) return String(millis / 1000);
  if (millis % 100 === 0) return (millis / 1000).toFixed(1);
  return `${millis}m`;
}

/** Bytes as text with the largest binary unit that divides them exactly ("64Mi", "1536Ki", "100"). */
export function formatMemory(bytes: number): string {
  const units: Array<[string, number]> = [
    ['Ti', 1024 ** 4],
    ['Gi', 1024 ** 3],
    ['Mi', 1024 ** 2],
    ['Ki', 1024],
  ];
  if (bytes > 0) {
    for (const [suffix, size] of units) {
      if (bytes % size === 0) return `${bytes / size}${suffix}`;
    }
  }
  return String(bytes);
}
