/** Command-line helpers shared by the benchmark scripts. */

/** `--NAME N` as a whole number > 0, or `fallback` when absent; exits 2 on a bad value. */
export function intArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v <= 0) {
    process.stderr.write(`--${name}: expected a whole number > 0, got ${JSON.stringify(process.argv[i + 1] ?? '')}\n`);
    process.exit(2);
  }
  return v;
}
