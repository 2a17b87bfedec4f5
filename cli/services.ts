/** `berth get services [NAME]` and `berth describe service NAME`: workloads with ports as services (virtual IP, ports, endpoints, traffic). */
import { Option, type Command } from 'commander';
import type { ListServicesResponse, Service } from '../proto/gen/berth/v1/services.js';
import type { CliContext } from './context.js';
import { OUTPUT_FORMATS, formatJson, formatTable, formatYaml, parseOutputFormat } from './output.js';
import type { Verb } from './verb.js';

async function serviceCall<Res>(ctx: CliContext, method: 'list' | 'get', req: object): Promise<Res> {
  const grpc = await import('./rpc.js');
  const gen = await import('../proto/gen/berth/v1/services.js');
  const { unaryOnce } = await import('./client.js');
  return unaryOnce<Res>(ctx, grpc.makeClient(gen.ServiceServiceService, ctx.controller, grpc.credentials.createInsecure(), { 'grpc.enable_retries': 0 }), method, req);
}

/** `80/tcp`, or `8080->80/tcp` when the port is published on every node's host port 8080. */
function portsText(s: Service): string {
  return s.ports.map((p) => `${p.published ? `${p.published}->` : ''}${p.port}/${p.protocol}`).join(',') || '-';
}

/** A rate or count for a table: whole numbers from 10 up, one decimal below. */
export function figureText(v: number): string {
  if (!Number.isFinite(v) || v <= 0) return '0';
  return v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10);
}

/** Requests/s, new connections/s and open connections summed over the endpoints. */
function totals(s: Service): { req: number; conn: number; open: number } {
  return s.endpoints.reduce((t, e) => ({ req: t.req + e.requestsPerSecond, conn: t.conn + e.connectionsPerSecond, open: t.open + e.openConnections }), { req: 0, conn: 0, open: 0 });
}

function endpointsText(s: Service): string {
  return `${s.endpoints.filter((e) => e.ready).length}/${s.endpoints.length}`;
}

/**
 * Table rows: NAME, VIP, PORTS (`HOSTPORT->` when published), ENDPOINTS
 * (ready/total), then the traffic over all endpoints: REQ/S (requests per
 * second), CONN/S (new connections per second), OPEN (open connections);
 * `wide` adds the ready endpoint addresses.
 */
export function serviceTable(items: readonly Service[], wide: boolean): string {
  const headers = ['NAME', 'VIP', 'PORTS', 'ENDPOINTS', 'REQ/S', 'CONN/S', 'OPEN'];
  if (wide) headers.push('ADDRESSES');
  return formatTable(headers, items.map((s) => {
    const t = totals(s);
    const row = [s.name, s.virtualIp || '-', portsText(s), endpointsText(s), figureText(t.req), figureText(t.conn), figureText(t.open)];
    if (wide) row.push(s.endpoints.filter((e) => e.ready).map((e) => e.address).join(',') || '-');
    return row;
  }));
}

/** The text of `berth describe service`: address, ports, traffic, endpoints with node, health and per-endpoint traffic. */
export function describeService(s: Service): string {
  const t = totals(s);
  const out = [
    `Name:       ${s.name}`,
    `Address:    ${s.virtualIp || '<none>'}`,
    `Ports:      ${s.ports.map((p) => `${p.port}/${p.protocol}${p.name ? ` (${p.name})` : ''} -> ${p.targetPort}${p.published ? `, published on host port ${p.published}` : ''}`).join('; ') || '<none>'}`,
    `Endpoints:  ${endpointsText(s)} ready`,
    `Traffic:    ${figureText(t.req)} requests/s, ${figureText(t.conn)} new connections/s, ${figureText(t.open)} open connections`,
  ];
  if (s.endpoints.length > 0) {
    const state = (x: string) => x.replace(/^CONTAINER_STATE_/, '').toLowerCase();
    out.push(formatTable(['CONTAINER', 'NODE', 'ADDRESS', 'STATE', 'HEALTH', 'READY', 'REQ/S', 'CONN/S', 'OPEN'], s.endpoints.map((e) => [
      e.containerName, e.node, e.address || '-', state(e.state), e.health || '-', e.ready ? 'yes' : e.draining ? 'no (draining)' : 'no',
      figureText(e.requestsPerSecond), figureText(e.connectionsPerSecond), figureText(e.openConnections),
    ])).trimEnd().split('\n').map((l) => `  ${l}`).join('\n'));
  }
  return out.join('\n') + '\n';
}

export async function runGetServices(ctx: CliContext, opts: { output?: string }, name: string | undefined): Promise<number> {
  const format = parseOutputFormat(opts.output);
  const { Service: ServiceMsg } = await import('../proto/gen/berth/v1/services.js');
  let items: Service[];
  if (name !== undefined) items = [await serviceCall<Service>(ctx, 'get', { name })];
  else items = (await serviceCall<ListServicesResponse>(ctx, 'list', {})).services;
  if (format === 'table' || format === 'wide') {
    if (items.length === 0) ctx.io.stderr.write('No services found.\n');
    else ctx.out(serviceTable(items, format === 'wide'));
    return 0;
  }
  const value = name !== undefined ? ServiceMsg.toJSON(items[0]!) : items.map((s) => ServiceMsg.toJSON(s));
  if (format === 'json') ctx.out(formatJson(value));
  else ctx.out(await formatYaml(value));
  return 0;
}

export async function runDescribeService(ctx: CliContext, name: string): Promise<number> {
  ctx.out(describeService(await serviceCall<Service>(ctx, 'get', { name })));
  return 0;
}

/** Adds `get services` and `describe service` to the `get` and `describe` commands (register after them). */
export const serviceVerbs: Verb = (program, run) => {
  const find = (n: string): Command => {
    const c = program.commands.find((x) => x.name() === n);
    if (!c) throw new Error(`berth ${n} is not registered before the service verbs`);
    return c;
  };
  find('get')
    .command('services')
    .aliases(['service', 'svc'])
    .summary('list services (workloads with ports), or show one')
    .description('List every workload with ports as a service: its virtual IP, ports (HOSTPORT->PORT/PROTO when published on every node), endpoints (ready/total; ready = running, healthy or without a health check, on a Ready node) and traffic over all endpoints as their nodes count it every 2 s: REQ/S requests per second, CONN/S new connections per second, OPEN open connections.')
    .argument('[name]', 'show only this service')
    .addOption(new Option('-o, --output <format>', 'output format').choices([...OUTPUT_FORMATS]).default('table'))
    .addHelpText('after', `
Examples:
  berth get services
  berth get services -o wide
  berth get service web -o json`)
    .action(run((ctx, _cmd: Command, opts: { output?: string }, args) => runGetServices(ctx, opts, args[0] as string | undefined)));
  find('describe')
    .command('service')
    .aliases(['services', 'svc'])
    .summary('address, ports, traffic and endpoints (node, health, requests/s) of a service')
    .argument('<name>', 'service (workload) name')
    .addHelpText('after', `
Example:
  berth describe service web`)
    .action(run((ctx, _cmd: Command, _opts: unknown, args) => runDescribeService(ctx, args[0] as string)));
};
