/**
 * The `berth` CLI. `runCli(argv)` parses the command line, runs one verb and
 * returns the exit code:
 *   0  success (and --help)
 *   1  the operation failed (the controller said no, or could not be reached)
 *   2  usage error (unknown verb or flag, bad flag value, missing argument)
 *
 * Errors print one "error: ..." line (more when validation found several
 * problems) and no stack trace unless --debug.
 *
 * Startup is kept lean: only commander and the verb definitions load here;
 * each verb imports gRPC, the generated clients and YAML when it runs.
 */
import { Command, CommanderError } from 'commander';
import { BerthError } from '../lib/errors.js';
import { UsageError, makeContext, processIO, type CliIO, type GlobalOptions } from './context.js';
import type { Runner } from './verb.js';
import { applyVerb } from './apply.js';
import { getVerb } from './get.js';
import { deleteVerb } from './delete.js';
import { scaleVerb } from './scale.js';
import { autoscaleVerb } from './autoscale.js';
import { rolloutVerb } from './rollout.js';
import { versionVerb } from './version.js';
import { serverVerbs } from './servers.js';
import { containerVerbs } from './containers.js';
import { containerVerbCommands } from './container-verbs.js';
import { runVerb, separateRunCommand } from './run.js';
import { interactiveVerbs, separateExecCommand } from './interactive.js';
import { clusterVerbs } from './cluster-verbs.js';
import { imageVerbs } from './images.js';
import { volumeVerbs } from './volumes.js';
import { infoVerb } from './info.js';
import { serviceVerbs } from './services.js';

function describeError(err: unknown, debug: boolean): string {
  if (!debug) {
    // Validation reports one problem per line; each line gets the prefix.
    const message = err instanceof Error ? err.message : String(err);
    return message.split('\n').map((line) => `error: ${line}`).join('\n') + '\n';
  }
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && depth < 5; depth++) {
    parts.push(depth === 0 ? `error: ${cur instanceof Error ? (cur.stack ?? cur.message) : String(cur)}` : `caused by: ${cur instanceof Error ? (cur.stack ?? cur.message) : JSON.stringify(cur)}`);
    if (cur instanceof BerthError) parts.push(`  (code: ${cur.code})`);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join('\n') + '\n';
}

/** Builds the command tree; `run` wraps each verb's handler. Exported for tests of the parser. */
export function buildProgram(io: CliIO, run: Runner): Command {
  const program = new Command('berth')
    .description('Berth: run containers across a fleet of machines.')
    .usage('[global options] <command> [options]')
    .option('--controller <host:port>', 'controller address (env BERTH_CONTROLLER)', undefined)
    .option('--debug', 'print stack traces and request details on errors')
    .option('--log-level <level>', 'error, warn, info or debug (env BERTH_LOG_LEVEL)')
    .exitOverride()
    .showSuggestionAfterError(true)
    .showHelpAfterError('(run "berth --help" or "berth <command> --help" for usage)')
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
    })
    .addHelpText('after', `
The controller address defaults to 127.0.0.1:7070.

Examples:
  berth apply -f examples/hello.yaml
  berth get workloads
  berth get nodes -o wide
  berth delete -f examples/hello.yaml
  berth --controller 10.0.0.5:7070 version

Run "berth <command> --help" for the options and examples of a command.`);
  program.helpCommand('help [command]', 'show help for a command');
  applyVerb(program, run);
  getVerb(program, run);
  deleteVerb(program, run);
  scaleVerb(program, run);
  autoscaleVerb(program, run);
  rolloutVerb(program, run);
  containerVerbs(program, run);
  containerVerbCommands(program, run);
  runVerb(program, run);
  interactiveVerbs(program, run);
  clusterVerbs(program, run);
  serviceVerbs(program, run);
  imageVerbs(program, run);
  volumeVerbs(program, run);
  infoVerb(program, run);
  versionVerb(program, run);
  serverVerbs(program, run);
  return program;
}

export async function runCli(argv: string[], io: CliIO = processIO): Promise<number> {
  // `berth get workloads | head -1`: a closed pipe ends the output quietly, like other CLI tools.
  io.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  let exitCode = 0;
  let debug = argv.includes('--debug');
  const run: Runner = (handler) => async (...commanderArgs: unknown[]) => {
    const cmd = commanderArgs[commanderArgs.length - 1] as Command;
    const opts = commanderArgs[commanderArgs.length - 2] as Parameters<typeof handler>[2];
    const positional = commanderArgs.slice(0, -2);
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    debug = Boolean(globals.debug);
    const ctx = makeContext(io, globals);
    exitCode = await handler(ctx, cmd, opts, positional);
  };
  const program = buildProgram(io, run);
  try {
    await program.parseAsync(separateExecCommand(separateRunCommand(argv)), { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version output exit 0; every other parse failure is a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' && err.exitCode === 0) return 0;
      if (err.code === 'commander.version') return 0;
      return 2;
    }
    io.stderr.write(describeError(err, debug));
    return err instanceof UsageError ? 2 : 1;
  }
}
