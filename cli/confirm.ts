import type { CliContext } from './context.js';

/** Asks `question` with "[y/N]" on stderr and reads one line of stdin; only "y" or "yes" (any case) goes on. */
export async function confirm(ctx: CliContext, question: string): Promise<boolean> {
  ctx.io.stderr.write(`${question} [y/N] `);
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: ctx.io.stdin, terminal: false });
  try {
    for await (const line of rl) return /^\s*y(es)?\s*$/i.test(line);
    ctx.io.stderr.write('\n');
    return false;
  } finally {
    rl.close();
  }
}
