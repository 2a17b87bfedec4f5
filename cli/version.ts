/** `berth version` */
import { Option, type Command } from 'commander';
import { API_VERSION, BERTH_VERSION } from '../lib/version.js';
import { messageOf } from '../lib/errors.js';
import type { CliContext } from './context.js';
import { formatJson, formatYaml, parseOutputFormat } from './output.js';
import type { Verb } from './verb.js';

export interface VersionInfo {
  client: { version: string; apiVersion: string };
  server?: { version: string; apiVersion: string; controllerId: string; leader: boolean; leaderId: string };
  /** Each registered node's agent, as its last registration said. */
  agents?: { node: string; version: string; status: string }[];
  /** Why the server part is missing. */
  serverError?: string;
}

export function versionText(info: VersionInfo): string {
  const lines = [`Client Version: ${info.client.version}`, `Client API Version: ${info.client.apiVersion}`];
  if (info.server) {
    const s = info.server;
    lines.push(`Server Version: ${s.version}`, `Server API Version: ${s.apiVersion}`);
    lines.push(`Controller: ${s.controllerId || '-'}${s.leader ? ' (leader)' : ''}`);
    lines.push(`Leader: ${s.leaderId || '<none>'}`);
  }
  for (const a of info.agents ?? []) lines.push(`Agent ${a.node}: ${a.version || 'unknown'} (${a.status})`);
  return lines.join('\n') + '\n';
}

/**
 * Prints the client's version and, when the controller answers, its version,
 * who leads and each node's agent version. Exit code 1 when the controller cannot be reached (the
 * client part is still printed).
 */
export async function runVersion(ctx: CliContext, output: string | undefined): Promise<number> {
  const format = parseOutputFormat(output, ['table', 'json', 'yaml']);
  const info: VersionInfo = { client: { version: BERTH_VERSION, apiVersion: API_VERSION } };
  const { withController } = await import('./client.js');
  try {
    const [v, nodes] = await withController(ctx, (api) => Promise.all([api.version(), api.listNodes()]));
    info.server = { version: v.version, apiVersion: v.apiVersion, controllerId: v.controllerId, leader: v.leader, leaderId: v.leaderId };
    const { nodeStatus } = await import('./get.js');
    info.agents = nodes.nodes.map((n) => ({ node: n.spec?.name ?? '', version: n.spec?.agentVersion ?? '', status: nodeStatus(n) }));
  } catch (err) {
    info.serverError = messageOf(err);
  }
  if (format === 'json') ctx.out(formatJson(info));
  else if (format === 'yaml') ctx.out(await formatYaml(info));
  else ctx.out(versionText(info));
  if (info.serverError !== undefined) {
    ctx.io.stderr.write(`error: ${info.serverError}\n`);
    return 1;
  }
  return 0;
}

export const versionVerb: Verb = (program, run) => {
  program
    .command('version')
    .summary("show the versions of the client, the controller and every node's agent")
    .description("Show the client's version and, when the controller answers, its version, its id, the current leader and the agent version of every registered node (with the node's status). Exits 1 when the controller cannot be reached.")
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addHelpText('after', `
Examples:
  berth version
  berth version -o json
  berth --controller 10.0.0.5:7070 version`)
    .action(run((ctx, _cmd: Command, opts: { output?: string }) => runVersion(ctx, opts.output)));
};
