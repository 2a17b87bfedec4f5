/** `berth delete workload NAME...` and `berth delete -f FILE` */
import type { Command } from 'commander';
import { InvalidArgumentError } from '../lib/errors.js';
import { UsageError, type CliContext } from './context.js';
import type { Verb } from './verb.js';

export interface DeleteOptions {
  filename?: string[];
  ignoreNotFound?: boolean;
}

/**
 * The workload names in a workload file, in order, without duplicates. Only
 * `metadata.name` is read; the rest of each document is the controller's
 * business. A document without a name is an error naming the document.
 */
export async function workloadNamesOf(text: string, source: string): Promise<string[]> {
  const { parseAllDocuments } = await import('yaml');
  const names: string[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  let index = 0;
  for (const doc of list) {
    index++;
    if (doc.errors.length > 0) {
      throw new InvalidArgumentError(`${source}: document ${index}: not valid YAML: ${doc.errors[0]?.message.split('\n')[0] ?? ''}`, { field: 'filename' });
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    const meta = typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>)['metadata'] : undefined;
    const name = meta && typeof meta === 'object' ? (meta as Record<string, unknown>)['name'] : undefined;
    if (typeof name !== 'string' || name === '') {
      throw new InvalidArgumentError(`${source}: document ${index}: metadata.name: expected a workload name`, { field: 'metadata.name' });
    }
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

export async function runDelete(ctx: CliContext, opts: DeleteOptions, names: readonly string[]): Promise<number> {
  const all = [...names];
  if (opts.filename && opts.filename.length > 0) {
    const { readInputFiles } = await import('./files.js');
    for (const f of await readInputFiles(opts.filename, ctx.io)) {
      for (const n of await workloadNamesOf(f.text, f.source)) if (!all.includes(n)) all.push(n);
    }
    if (all.length === 0) throw new InvalidArgumentError(`${opts.filename.join(', ')}: no workloads in the file`, { field: 'filename' });
  }
  if (all.length === 0) throw new UsageError('delete: expected "workload NAME..." or -f FILE');
  const { withController } = await import('./client.js');
  const res = await withController(ctx, (api) => api.deleteWorkloads({ names: all, ignoreNotFound: Boolean(opts.ignoreNotFound) }));
  for (const n of res.deleted) ctx.out(`workload/${n} deleted`);
  return 0;
}

export const deleteVerb: Verb = (program, run) => {
  const del = program
    .command('delete')
    .summary('delete workloads by name or by file')
    .description('Delete workloads, all in one call: either the named ones or every workload of the given files. Unknown names fail the whole call unless --ignore-not-found.')
    .argument('[kind]', 'only "workload" (see the command below)')
    .allowExcessArguments()
    .option('-f, --filename <file...>', 'delete every workload named in these files; "-" reads standard input')
    .option('--ignore-not-found', 'succeed for workloads that do not exist')
    .addHelpText('after', `
Examples:
  berth delete workload web
  berth delete workload web db cache
  berth delete -f examples/hello.yaml
  berth delete -f web.yaml --ignore-not-found`)
    .action(run((ctx, cmd: Command, opts: DeleteOptions) => {
      if (cmd.args.length > 0) throw new UsageError(`delete: unknown kind "${cmd.args[0]}"; expected "workload NAME..." or -f FILE`);
      return runDelete(ctx, opts, []);
    }));

  del
    .command('workload')
    .alias('workloads')
    .summary('delete the named workloads')
    .argument('<names...>', 'workload names')
    .option('--ignore-not-found', 'succeed for workloads that do not exist')
    .addHelpText('after', `
Examples:
  berth delete workload web
  berth delete workloads web db`)
    // --ignore-not-found after the names is parsed by the parent "delete" command; optsWithGlobals merges both.
    .action(run((ctx, cmd: Command, _opts: DeleteOptions, args) =>
      runDelete(ctx, { ignoreNotFound: Boolean(cmd.optsWithGlobals<DeleteOptions>().ignoreNotFound), filename: [] }, args[0] as string[])));
};
