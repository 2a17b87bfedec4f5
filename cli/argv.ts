/**
 * Docker's rule for verbs that run a command (`run IMAGE CMD...`,
 * `exec CONTAINER CMD...`): every word after the first operand belongs to the
 * command, even words starting with "-". commander would read those as its
 * own options, so "--" is inserted after the operand before parsing.
 */

/** Global options (before the verb) that take a value: the next word. */
const GLOBAL_VALUE_OPTIONS = new Set(['--controller', '--log-level']);

/**
 * Returns argv with "--" inserted after the first operand of `verb` (when the
 * verb is `verb` and there is no "--" before the command already).
 * `valueOptions` are the verb's options that take the next word as value
 * ("-m64Mi" and "--memory=64Mi" take one word either way).
 */
export function separateCommand(argv: readonly string[], verb: string, valueOptions: ReadonlySet<string>): string[] {
  let i = 0;
  while (i < argv.length && (argv[i] ?? '').startsWith('-')) i += GLOBAL_VALUE_OPTIONS.has(argv[i] ?? '') ? 2 : 1;
  if (argv[i] !== verb) return [...argv];
  i++;
  while (i < argv.length) {
    const a = argv[i] ?? '';
    if (a === '--') return [...argv];
    if (!a.startsWith('-') || a === '-') break;
    i += valueOptions.has(a) || GLOBAL_VALUE_OPTIONS.has(a) ? 2 : 1;
  }
  if (i >= argv.length - 1 || argv[i + 1] === '--') return [...argv];
  return [...argv.slice(0, i + 1), '--', ...argv.slice(i + 1)];
}
