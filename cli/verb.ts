/**
 * How verb files plug into the program: each exports a `Verb` that adds its
 * commands to the root command, wrapping its handler with `run` so that the
 * global options become a CliContext and the handler's exit code is kept.
 */
import type { Command } from 'commander';
import type { CliContext } from './context.js';

/**
 * A verb's handler: the context, its own command, its options (typed by the
 * verb) and its positional arguments in declaration order (a variadic one is a
 * string array). Returns the exit code.
 */
export type Handler<O> = (ctx: CliContext, cmd: Command, opts: O, args: unknown[]) => Promise<number>;

/** Wraps a handler into a commander action. */
export type Runner = <O>(handler: Handler<O>) => (...commanderArgs: unknown[]) => Promise<void>;

export type Verb = (program: Command, run: Runner) => void;
