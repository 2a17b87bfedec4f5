#!/usr/bin/env node
/**
 * The `berth` entry point. It only dispatches: `berth controller ...` runs the
 * controller, `berth agent ...` runs a node agent, anything else is the CLI.
 * Each program is imported lazily so the CLI does not pay for the libraries of
 * the servers (and the servers do not load each other).
 *
 * CommonJS on purpose: Node starts a CommonJS entry point without its ES
 * module loader, about 10 ms sooner here; the programs themselves are ES
 * modules, imported when needed.
 *
 * The CLI exits as soon as its verb is done and its output is written: it
 * does not wait for closing gRPC connections (an HTTP/2 goodbye) or other
 * handles to wind down, which otherwise adds milliseconds to every command.
 */

import loader = require('./cli-loader.cjs');

const argv = process.argv.slice(2);
const verb = argv[0];

async function dispatch(): Promise<number> {
  if (verb === 'controller') {
    const { runController } = await import('../controller/main.js');
    return runController(argv.slice(1));
  }
  if (verb === 'agent') {
    const { runAgent } = await import('../agent/main.js');
    return runAgent(argv.slice(1));
  }
  // The bundled CLI (scripts/bundle-cli.mjs) starts faster; a build without it uses the modules.
  const bundled = loader.loadBundledCli();
  if (bundled) {
    const code = await bundled.runCli(argv);
    bundled.done();
    return exitWhenWritten(code);
  }
  const { runCli } = await import('../cli/main.js');
  return exitWhenWritten(await runCli(argv));
}

/** Exits with `code` once stdout and stderr have taken everything written to them. */
function exitWhenWritten(code: number): Promise<number> {
  const flushed = (s: NodeJS.WriteStream): Promise<void> => new Promise((resolve) => {
    if (s.destroyed || !s.writable) resolve();
    else s.write('', () => resolve());
  });
  return Promise.all([flushed(process.stdout), flushed(process.stderr)]).then(() => process.exit(code));
}

dispatch().then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`berth: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
