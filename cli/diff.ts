/**
 * Line diffs in unified style (`berth apply --dry-run`): a longest common
 * subsequence of lines, grouped into hunks with context, optionally colored
 * (red removals, green additions, cyan hunk headers) for a terminal.
 */

export type DiffOp = { kind: ' ' | '-' | '+'; line: string };

/** Most lines compared with the quadratic LCS; bigger inputs fall back to "all removed, all added". */
const MAX_LCS_CELLS = 4_000_000;

/** The edit script from `a` to `b`, in order. */
export function diffLines(a: readonly string[], b: readonly string[]): DiffOp[] {
  const n = a.length;
  const m = b.length;
  if (n * m > MAX_LCS_CELLS) return [...a.map((line) => ({ kind: '-' as const, line })), ...b.map((line) => ({ kind: '+' as const, line }))];
  // lcs[i][j]: length of the LCS of a[i..] and b[j..], in one flat array.
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = a[i] === b[j] ? (lcs[(i + 1) * w + j + 1] ?? 0) + 1 : Math.max(lcs[(i + 1) * w + j] ?? 0, lcs[i * w + j + 1] ?? 0);
    }
  }
  const out: DiffOp[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ kind: ' ', line: a[i] as string });
      i++;
      j++;
    } else if ((lcs[(i + 1) * w + j] ?? 0) >= (lcs[i * w + j + 1] ?? 0)) {
      out.push({ kind: '-', line: a[i++] as string });
    } else {
      out.push({ kind: '+', line: b[j++] as string });
    }
  }
  while (i < n) out.push({ kind: '-', line: a[i++] as string });
  while (j < m) out.push({ kind: '+', line: b[j++] as string });
  return out;
}

const RED = '\u001b[31m';
const GREEN = '\u001b[32m';
const CYAN = '\u001b[36m';
const BOLD = '\u001b[1m';
const RESET = '\u001b[0m';

export interface UnifiedDiffOptions {
  /** Header names (`--- from`, `+++ to`). */
  from: string;
  to: string;
  /** Lines of context around each change (3). */
  context?: number;
  color?: boolean;
}

/** A unified diff of two texts, or "" when they are equal. */
export function unifiedDiff(before: string, after: string, opts: UnifiedDiffOptions): string {
  const split = (t: string): string[] => (t === '' ? [] : t.replace(/\n$/, '').split('\n'));
  const a = split(before);
  const b = split(after);
  const ops = diffLines(a, b);
  if (ops.every((o) => o.kind === ' ')) return '';
  const ctx = opts.context ?? 3;
  const paint = (code: string, s: string): string => (opts.color ? `${code}${s}${RESET}` : s);
  const lines: string[] = [paint(BOLD, `--- ${opts.from}`), paint(BOLD, `+++ ${opts.to}`)];
  // Line numbers (1-based) in a and b at each op.
  const pos: { ai: number; bi: number }[] = [];
  let ai = 1;
  let bi = 1;
  for (const o of ops) {
    pos.push({ ai, bi });
    if (o.kind !== '+') ai++;
    if (o.kind !== '-') bi++;
  }
  const changed = ops.map((o, k) => (o.kind !== ' ' ? k : -1)).filter((k) => k >= 0);
  let k = 0;
  while (k < changed.length) {
    const start = Math.max(0, (changed[k] as number) - ctx);
    let end = Math.min(ops.length, (changed[k] as number) + ctx + 1);
    while (k + 1 < changed.length && (changed[k + 1] as number) - ctx <= end) {
      k++;
      end = Math.min(ops.length, (changed[k] as number) + ctx + 1);
    }
    k++;
    const hunk = ops.slice(start, end);
    const first = pos[start] as { ai: number; bi: number };
    const aCount = hunk.filter((o) => o.kind !== '+').length;
    const bCount = hunk.filter((o) => o.kind !== '-').length;
    lines.push(paint(CYAN, `@@ -${aCount === 0 ? first.ai - 1 : first.ai},${aCount} +${bCount === 0 ? first.bi - 1 : first.bi},${bCount} @@`));
    for (const o of hunk) lines.push(o.kind === '-' ? paint(RED, `-${o.line}`) : o.kind === '+' ? paint(GREEN, `+${o.line}`) : ` ${o.line}`);
  }
  return lines.join('\n') + '\n';
}
