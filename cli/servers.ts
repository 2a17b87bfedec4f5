/**
 * `berth controller` and `berth agent` are server commands. cmd/berth.cts runs
 * them before the CLI is loaded; they are declared here only so that `berth
 * --help` lists them.
 */
import type { Command } from 'commander';
import { UsageError } from './context.js';
import type { Verb } from './verb.js';

export const serverVerbs: Verb = (program, run) => {
  for (const [name, summary] of [
    ['controller', 'run a controller (server command; see "berth controller --help")'],
    ['agent', 'run a node agent (server command; see "berth agent --help")'],
  ] as const) {
    program
      .command(name)
      .summary(summary)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(run(async (_ctx, _cmd: Command) => {
        throw new UsageError(`"${name}" is a server command; run it through the berth program: berth ${name} --help`);
      }));
  }
};
