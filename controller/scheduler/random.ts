/**
 * Seeded randomness for tie-breaks. Nothing here reads a clock or
 * Math.random: the same seed always gives the same numbers, on every
 * machine, so a plan can be reproduced from its evaluation id.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Scrambles the bits of a 32-bit value (a finalizer: every input bit affects every output bit). */
function avalanche(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Folds the UTF-16 code units of `s` into a running FNV-1a state. */
function fold(state: number, s: string): number {
  let h = state;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

/** A well-mixed unsigned 32-bit hash of a string. */
export function hashString(s: string): number {
  return avalanche(fold(FNV_OFFSET, s));
}

/**
 * Returns a function that hashes a key under `seed`: the same (seed, key)
 * always gives the same number, and different seeds order keys differently.
 * Used to give each node a tie-break key that depends only on the
 * evaluation id and the node's own name.
 */
export function seededHasher(seed: string): (key: string) => number {
  // The seed's length goes in too, so ("ab","c") and ("a","bc") differ.
  const base = Math.imul(fold(FNV_OFFSET, seed) ^ seed.length, FNV_PRIME) >>> 0;
  return (key) => avalanche(fold(base, key));
}

/**
 * A small seeded pseudo-random generator (a 32-bit counter stepped by the
 * golden-ratio constant, then scrambled). Returns floats in [0, 1). Good
 * enough for shuffles and randomized tests; not for secrets.
 */
export function createRng(seed: string): () => number {
  let state = hashString(seed);
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    return avalanche(state ^ (state >>> 15)) / 0x100000000;
  };
}

/** A whole number in [0, n) from `rng`. */
export function randomInt(rng: () => number, n: number): number {
  return Math.floor(rng() * n);
}

