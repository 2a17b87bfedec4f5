/**
 * Typed reading of YAML nodes with problem collection.
 *
 * Validation never stops at the first problem: every reader reports what it
 * finds to a Reporter (with the field path and the node's line) and returns
 * undefined for a value it could not read, so the caller can go on with the
 * other fields. Nodes are read directly from the YAML syntax tree, never
 * through `toJS()`, so keys such as `__proto__` cannot reach a plain object
 * and aliases are refused rather than expanded.
 */
import { isAlias, isMap, isScalar, isSeq, type LineCounter, type Scalar } from 'yaml';
import type { WorkloadProblem } from './types.js';
import { suggest } from './suggest.js';

/** Most problems kept for one file; a hostile file cannot make the error huge. */
export const MAX_PROBLEMS = 100;

/** The problems of one file: the first MAX_PROBLEMS are kept, the rest only counted. */
export class ProblemList {
  readonly kept: WorkloadProblem[] = [];
  dropped = 0;

  /** All problems found so far, kept or not. */
  get count(): number {
    return this.kept.length + this.dropped;
  }

  add(problem: WorkloadProblem): void {
    if (this.kept.length >= MAX_PROBLEMS) this.dropped++;
    else this.kept.push(problem);
  }
}

/** Reports problems of one document into the file's ProblemList. */
export class Reporter {
  constructor(
    private readonly lineCounter: LineCounter,
    private readonly document: number | undefined,
    private readonly list: ProblemList,
  ) {}

  /** Problems found so far in the whole file; compare before and after reading a part. */
  get count(): number {
    return this.list.count;
  }

  /** True once no more problems are kept; callers may skip costly hints. */
  get full(): boolean {
    return this.list.kept.length >= MAX_PROBLEMS;
  }

  /** Records a problem at `path`; `at` is the node whose line is added to the message. */
  report(path: string, at: unknown, message: string): void {
    const problem: WorkloadProblem = { path: path === '' ? '(document)' : path, message };
    if (this.document !== undefined) problem.document = this.document;
    const offset = offsetOf(at);
    if (offset !== undefined) {
      const pos = this.lineCounter.linePos(offset);
      if (pos.line > 0) {
        problem.line = pos.line;
        problem.column = pos.col;
        problem.message = `${message} (line ${pos.line})`;
      }
    }
    this.list.add(problem);
  }

  /** Records an error from the YAML parser at `offset`, with line and column in the message. */
  reportYaml(offset: number, message: string): void {
    const pos = this.lineCounter.linePos(offset);
    const problem: WorkloadProblem = { path: '(yaml)', message: `invalid YAML: ${message}` };
    if (this.document !== undefined) problem.document = this.document;
    if (pos.line > 0) {
      problem.line = pos.line;
      problem.column = pos.col;
      problem.message = `invalid YAML at line ${pos.line}, column ${pos.col}: ${message}`;
    }
    this.list.add(problem);
  }
}

function offsetOf(at: unknown): number | undefined {
  if (typeof at === 'number') return at;
  if (at !== null && typeof at === 'object' && 'range' in at) {
    const range = (at as { range?: unknown }).range;
    if (Array.isArray(range) && typeof range[0] === 'number') return range[0];
  }
  return undefined;
}

/** Path of a field below `parent`: `a.b`, or `a["x.y"]` when the key is not a plain identifier. */
export function childPath(parent: string, key: string): string {
  const plain = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key);
  if (parent === '') return plain ? key : `[${JSON.stringify(key)}]`;
  return plain ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/** Path of a list item: `a[3]`. */
export function itemPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

function short(s: string): string {
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Text of a scalar as written (numbers keep their source form, e.g. "3.0"). */
function scalarText(node: Scalar): string {
  if (typeof node.source === 'string' && node.source !== '' && typeof node.value !== 'string') return node.source;
  return String(node.value);
}

/** True when a field is absent or explicitly null (`key:` or `key: null`), which means "not set". */
export function isUnset(node: unknown): boolean {
  return node === undefined || node === null || (isScalar(node) && node.value === null);
}

/** The value as quoted in a range error: `"-2"`. */
export function shown(node: unknown): string {
  if (isScalar(node)) return JSON.stringify(short(scalarText(node)));
  return describe(node);
}

/** What a node is, for type errors: `the string "3"`, `the number 8080`, `a list`. */
export function describe(node: unknown): string {
  if (node === undefined || node === null) return 'nothing';
  if (isAlias(node)) return 'an alias';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return node.source === '' || node.source === undefined ? 'nothing' : 'null';
    if (typeof v === 'string') return `the string ${JSON.stringify(short(v))}`;
    if (typeof v === 'number') return `the number ${short(scalarText(node))}`;
    if (typeof v === 'boolean') return `the boolean ${scalarText(node)}`;
    return `a ${typeof v}`;
  }
  return 'an unsupported YAML value';
}

/** Reports and returns true when the node is an alias (`*name`), which we never expand. */
function refuseAlias(r: Reporter, node: unknown, path: string): boolean {
  if (!isAlias(node)) return false;
  r.report(path, node, 'aliases such as "*name" are not supported (write the value out in full)');
  return true;
}

/** A field of a mapping: the key node and the value node (null when written as `key:`). */
export interface FieldEntry {
  key: Scalar;
  value: unknown;
}

/**
 * Reads a mapping with a fixed set of field names. Unknown fields are
 * reported (with a "did you mean" suggestion); known fields are returned by
 * name. Returns undefined (after reporting) when the node is not a mapping.
 */
export function readFields(
  r: Reporter,
  node: unknown,
  path: string,
  allowed: readonly string[],
  expected: string,
): Map<string, FieldEntry> | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  if (!isMap(node)) {
    r.report(path, node, `expected ${expected}, got ${describe(node)}`);
    return undefined;
  }
  const out = new Map<string, FieldEntry>();
  for (const pair of node.items) {
    const key = pair.key;
    if (!isScalar(key) || typeof key.value !== 'string') {
      r.report(path, key, `expected field names to be plain strings, got ${describe(key)}`);
      continue;
    }
    const name = key.value;
    if (!allowed.includes(name)) {
      const guess = r.full ? undefined : suggest(name, allowed);
      const hint = guess !== undefined ? `did you mean ${JSON.stringify(guess)}?` : `expected one of: ${allowed.join(', ')}`;
      r.report(childPath(path, name), key, `unknown field ${JSON.stringify(short(name))} (${hint})`);
      continue;
    }
    out.set(name, { key, value: pair.value });
  }
  return out;
}

/** Hint added when a number or boolean was written where text is expected. */
function quoteHint(node: unknown): string {
  if (isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')) {
    return ` (put it in quotes, ${JSON.stringify(scalarText(node))}, to use it as text)`;
  }
  return '';
}

export interface StringRules {
  /** Allow "" (default false). */
  allowEmpty?: boolean;
  /** Longest accepted UTF-8 length. */
  maxBytes?: number;
  /** Refuse NUL characters (for things passed to exec or the environment). */
  noNul?: boolean;
}

/** Reads a string; numbers and booleans are refused with a hint to quote them. */
export function readString(r: Reporter, node: unknown, path: string, expected: string, rules: StringRules = {}): string | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  if (!isScalar(node) || typeof node.value !== 'string') {
    const emptyHint = rules.allowEmpty === true && isUnset(node) ? ' (write "" for an empty string)' : '';
    r.report(path, node, `expected ${expected}, got ${describe(node)}${quoteHint(node)}${emptyHint}`);
    return undefined;
  }
  const value = node.value;
  if (value === '' && rules.allowEmpty !== true) {
    r.report(path, node, `expected ${expected}, got an empty string`);
    return undefined;
  }
  if (rules.maxBytes !== undefined && Buffer.byteLength(value, 'utf8') > rules.maxBytes) {
    r.report(path, node, `expected ${expected} of at most ${rules.maxBytes} bytes, got ${Buffer.byteLength(value, 'utf8')} bytes`);
    return undefined;
  }
  if (rules.noNul === true && value.includes('\u0000')) {
    r.report(path, node, `expected ${expected} without NUL characters`);
    return undefined;
  }
  return value;
}

/** Reads a whole number in [min, max]. */
export function readWhole(r: Reporter, node: unknown, path: string, min: number, max: number, what = 'a whole number'): number | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  const expected = `expected ${what} from ${min} to ${max}`;
  if (!isScalar(node) || typeof node.value !== 'number') {
    const hint = isScalar(node) && typeof node.value === 'string' && /^-?[0-9]+$/.test(node.value.trim()) ? ' (remove the quotes)' : '';
    r.report(path, node, `${expected}, got ${describe(node)}${hint}`);
    return undefined;
  }
  const v = node.value;
  if (!Number.isInteger(v) || v < min || v > max) {
    r.report(path, node, `${expected}, got ${shown(node)}`);
    return undefined;
  }
  return v;
}

/** Reads a number (decimals allowed) in [min, max], or (min, max] when `aboveMin`. */
export function readNumber(r: Reporter, node: unknown, path: string, min: number, max: number, aboveMin = false): number | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  const expected = `expected a number ${aboveMin ? 'above' : 'from'} ${min} ${aboveMin ? 'and at most' : 'to'} ${max}`;
  if (!isScalar(node) || typeof node.value !== 'number' || !Number.isFinite(node.value)) {
    const hint = isScalar(node) && typeof node.value === 'string' && /^-?[0-9.]+$/.test(node.value.trim()) ? ' (remove the quotes)' : '';
    r.report(path, node, `${expected}, got ${describe(node)}${hint}`);
    return undefined;
  }
  const v = node.value;
  if (v > max || v < min || (aboveMin && v === min)) {
    r.report(path, node, `${expected}, got ${shown(node)}`);
    return undefined;
  }
  return v;
}

/** Reads a boolean (`true` or `false`; strings such as "yes" are refused). */
export function readBoolean(r: Reporter, node: unknown, path: string): boolean | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  if (!isScalar(node) || typeof node.value !== 'boolean') {
    r.report(path, node, `expected true or false, got ${describe(node)}`);
    return undefined;
  }
  return node.value;
}

/** Reads one of a fixed set of strings, suggesting the closest on a miss. */
export function readEnum<T extends string>(r: Reporter, node: unknown, path: string, values: readonly T[]): T | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  const list = values.map((v) => JSON.stringify(v)).join(', ');
  if (!isScalar(node) || typeof node.value !== 'string') {
    r.report(path, node, `expected one of ${list}, got ${describe(node)}`);
    return undefined;
  }
  const v = node.value;
  if ((values as readonly string[]).includes(v)) return v as T;
  const guess = suggest(v, values);
  const hint = guess !== undefined ? ` (did you mean ${JSON.stringify(guess)}?)` : '';
  r.report(path, node, `expected one of ${list}, got ${shown(node)}${hint}`);
  return undefined;
}

/** Reads a list node; returns its items, or undefined after reporting. */
export function readList(r: Reporter, node: unknown, path: string, expected: string, maxItems: number): unknown[] | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  if (!isSeq(node)) {
    r.report(path, node, `expected ${expected}, got ${describe(node)}`);
    return undefined;
  }
  if (node.items.length > maxItems) {
    r.report(path, node, `expected ${expected} of at most ${maxItems} items, got ${node.items.length}`);
    return undefined;
  }
  return node.items;
}

/** Reads a list of strings. Bad items are reported one by one; undefined when any was bad. */
export function readStringList(
  r: Reporter,
  node: unknown,
  path: string,
  maxItems: number,
  rules: StringRules = {},
): string[] | undefined {
  const items = readList(r, node, path, 'a list of strings', maxItems);
  if (items === undefined) return undefined;
  const out: string[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const s = readString(r, item, itemPath(path, i), 'a string', { allowEmpty: true, ...rules });
    if (s === undefined) ok = false;
    else out.push(s);
  });
  return ok ? out : undefined;
}

export interface StringMapRules {
  maxEntries: number;
  /** What the map holds, e.g. "a mapping of label keys to values". */
  expected: string;
  keyProblem: (key: string) => string | undefined;
  valueProblem?: (value: string) => string | undefined;
  value?: StringRules;
}

/**
 * Reads a mapping of strings to strings. Returns an object whose keys are in
 * the order written; undefined when any key or value was bad.
 */
export function readStringMap(r: Reporter, node: unknown, path: string, rules: StringMapRules): Record<string, string> | undefined {
  if (refuseAlias(r, node, path)) return undefined;
  if (!isMap(node)) {
    r.report(path, node, `expected ${rules.expected}, got ${describe(node)}`);
    return undefined;
  }
  if (node.items.length > rules.maxEntries) {
    r.report(path, node, `expected ${rules.expected} with at most ${rules.maxEntries} entries, got ${node.items.length}`);
    return undefined;
  }
  const out: Record<string, string> = {};
  let ok = true;
  for (const pair of node.items) {
    const key = pair.key;
    if (!isScalar(key) || typeof key.value !== 'string') {
      const text = isScalar(key) ? scalarText(key) : '';
      r.report(childPath(path, text), key, `expected keys to be strings, got ${describe(key)}${quoteHint(key)}`);
      ok = false;
      continue;
    }
    const name = key.value;
    const keyPath = childPath(path, name);
    const keyProblem = rules.keyProblem(name);
    if (keyProblem !== undefined) {
      r.report(keyPath, key, keyProblem);
      ok = false;
      continue;
    }
    const value = readString(r, pair.value, keyPath, 'a string', { allowEmpty: true, ...rules.value });
    if (value === undefined) {
      ok = false;
      continue;
    }
    const valueProblem = rules.valueProblem?.(value);
    if (valueProblem !== undefined) {
      r.report(keyPath, pair.value, valueProblem);
      ok = false;
      continue;
    }
    out[name] = value;
  }
  return ok ? out : undefined;
}
