/** Order statistics the benchmarks print (nearest-rank: the lower middle value for an even count). */

/** The q-quantile (0..1) of `values` by nearest rank; NaN for none. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}
