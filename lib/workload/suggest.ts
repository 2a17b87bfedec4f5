/**
 * "Did you mean" suggestions for misspelled field names and enum values.
 */

/** Lowercase with "-" and "_" removed, so `backoff_cap_seconds` meets `backoffCapSeconds`. */
function fold(s: string): string {
  return s.toLowerCase().replace(/[-_]/g, '');
}

/**
 * Edit distance with adjacent transpositions (optimal string alignment):
 * "replcias" is one edit from "replicas". Inputs are short field names; long
 * inputs are cut so a hostile key cannot cost much.
 */
export function editDistance(a: string, b: string): number {
  const x = a.slice(0, 64);
  const y = b.slice(0, 64);
  const rows = x.length + 1;
  const cols = y.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) {
        best = Math.min(best, at(i - 2, j - 2) + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return at(rows - 1, cols - 1);
}

/**
 * The candidate closest to `word`, or undefined when none is close enough.
 * Case, "-" and "_" are ignored first; otherwise at most one edit per three
 * characters (and never more than three) is allowed.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const folded = fold(word);
  for (const c of candidates) if (fold(c) === folded) return c;
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const allowed = Math.min(3, Math.max(1, Math.floor(Math.max(word.length, c.length) / 3)));
    if (Math.abs(word.length - c.length) > allowed) continue; // cannot be close enough
    const distance = editDistance(word.toLowerCase(), c.toLowerCase());
    if (distance <= allowed && distance < bestDistance) {
      best = c;
      bestDistance = distance;
    }
  }
  return best;
}
