/**
 * Checks of request fields. Requests are hostile: every name, list and map is
 * bounded and checked before it reaches the store, and each error names the
 * request field and what was expected.
 */
import { InvalidArgumentError, dnsLabelProblem, labelKeyProblem, labelValueProblem } from '../../lib/index.js';

/** Most names in one delete. */
export const MAX_NAMES_PER_REQUEST = 50;
/** Most pairs in one label selector or label map. */
export const MAX_LABELS = 64;
/** Longest free-text field (source file name, versions, os, ...). */
export const MAX_TEXT = 256;
/** Largest manifest accepted by Apply, in bytes (the workload file limit). */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

function q(v: string): string {
  return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
}

export function checkName(field: string, value: unknown, kind = 'workload'): string {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidArgumentError(`${field}: expected a ${kind} name, got nothing`, { field });
  }
  const problem = dnsLabelProblem(value);
  if (problem) throw new InvalidArgumentError(`${field}: ${problem}`, { field });
  return value;
}

export function checkNames(field: string, values: readonly unknown[]): string[] {
  if (values.length === 0) throw new InvalidArgumentError(`${field}: expected at least one workload name, got none`, { field });
  if (values.length > MAX_NAMES_PER_REQUEST) {
    throw new InvalidArgumentError(`${field}: expected at most ${MAX_NAMES_PER_REQUEST} names per request, got ${values.length}`, { field });
  }
  return values.map((v, i) => checkName(`${field}[${i}]`, v));
}

export function checkLabels(field: string, labels: Record<string, string> | undefined): Record<string, string> {
  const entries = Object.entries(labels ?? {});
  if (entries.length > MAX_LABELS) {
    throw new InvalidArgumentError(`${field}: expected at most ${MAX_LABELS} labels, got ${entries.length}`, { field });
  }
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    const kp = labelKeyProblem(k);
    if (kp) throw new InvalidArgumentError(`${field}: ${kp}`, { field });
    const vp = labelValueProblem(v);
    if (vp) throw new InvalidArgumentError(`${field}[${q(k)}]: ${vp}`, { field: `${field}.${k}` });
    out[k] = v;
  }
  return out;
}

/** Printable text of at most `max` characters (used in messages and records). */
export function checkText(field: string, value: string, max = MAX_TEXT): string {
  if (value.length > max) throw new InvalidArgumentError(`${field}: expected at most ${max} characters, got ${value.length}`, { field });
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new InvalidArgumentError(`${field}: expected printable text without control characters, got ${q(value)}`, { field });
  return value;
}

export function checkNonNegative(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`${field}: expected a whole number of 0 or more, got "${value}"`, { field });
  }
  return value;
}

export function checkHostPort(field: string, value: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new InvalidArgumentError(`${field}: expected HOST:PORT such as 10.0.0.5:7071, got ${q(value)}`, { field });
  }
  return value;
}
