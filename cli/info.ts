/**
 * `berth info`: one look at the whole cluster — the controller and who leads,
 * every node with its state, agent version, kernel and cgroup version, and
 * counts of containers (running / stopped) and images. Built from the
 * existing read calls (Version, NodeService.List, ContainerService.List,
 * ImageService.List); nothing is cached.
 */
import { Option, type Command } from 'commander';
import { API_VERSION, BERTH_VERSION } from '../lib/version.js';
import { messageOf } from '../lib/errors.js';
import type { ImageListResponse } from '../proto/gen/berth/v1/controller.js';
import { ContainerState, NodeState } from '../proto/gen/berth/v1/types.js';
import type { CliContext } from './context.js';
import { formatBytes, formatCpu, formatJson, formatTable, formatYaml, parseOutputFormat } from './output.js';
import type { Verb } from './verb.js';

export interface ClusterInfo {
  client: { version: string; apiVersion: string };
  controller: { address: string; version: string; id: string; leader: string };
  nodes: { total: number; ready: number; list: { name: string; state: string; cordoned: boolean; agentVersion: string; os: string; arch: string; kernel: string; cgroupVersion: string; cpu: string; memory: string; containers: number }[] };
  containers: { total: number; running: number; stopped: number; pending: number };
  images: { total: number; unique: number; unreachable: string[] };
  workloads: number;
}

export async function runInfo(ctx: CliContext, output: string | undefined): Promise<number> {
  const format = parseOutputFormat(output, ['table', 'json', 'yaml']);
  const { withController } = await import('./client.js');
  const info = await withController(ctx, async (api): Promise<ClusterInfo> => {
    const [version, nodes, containers, workloads] = await Promise.all([
      api.version(), api.listNodes(), api.listContainers({ all: true }), api.listWorkloads({}),
    ]);
    let images: ImageListResponse = { images: [], unreachable: [] };
    try {
      const { listImages } = await import('./images.js');
      images = await listImages(ctx, undefined);
    } catch (err) {
      // No Ready node to ask is not an error for an overview.
      images = { images: [], unreachable: [messageOf(err)] };
    }
    const states = containers.containers.map((c) => c.status?.state ?? ContainerState.CONTAINER_STATE_UNSPECIFIED);
    return {
      client: { version: BERTH_VERSION, apiVersion: API_VERSION },
      controller: { address: ctx.controller, version: version.version, id: version.controllerId, leader: version.leaderId },
      nodes: {
        total: nodes.nodes.length,
        ready: nodes.nodes.filter((n) => n.status?.state === NodeState.NODE_STATE_READY).length,
        list: nodes.nodes.map((n) => ({
          name: n.spec?.name ?? '',
          state: n.status?.state === NodeState.NODE_STATE_READY ? 'Ready' : 'NotReady',
          cordoned: Boolean(n.spec?.cordoned),
          agentVersion: n.spec?.agentVersion ?? '',
          os: n.spec?.os ?? '',
          arch: n.spec?.arch ?? '',
          kernel: n.spec?.kernel ?? '',
          cgroupVersion: n.spec?.cgroupVersion ?? '',
          cpu: formatCpu(n.spec?.capacity?.cpuMillis ?? 0),
          memory: formatBytes(n.spec?.capacity?.memoryBytes ?? 0),
          containers: n.status?.containers ?? 0,
        })),
      },
      containers: {
        total: states.length,
        running: states.filter((s) => s === ContainerState.CONTAINER_STATE_RUNNING).length,
        stopped: states.filter((s) => s === ContainerState.CONTAINER_STATE_EXITED).length,
        pending: states.filter((s) => s === ContainerState.CONTAINER_STATE_PENDING || s === ContainerState.CONTAINER_STATE_CREATED).length,
      },
      images: { total: images.images.length, unique: new Set(images.images.map((i) => i.digest)).size, unreachable: images.unreachable },
      workloads: workloads.workloads.length,
    };
  });
  if (format === 'json') ctx.out(formatJson(info));
  else if (format === 'yaml') ctx.out(await formatYaml(info));
  else ctx.out(infoText(info));
  return 0;
}

export function infoText(i: ClusterInfo): string {
  const lines = [
    `Client: ${i.client.version} (API ${i.client.apiVersion})`,
    `Controller: ${i.controller.address}, version ${i.controller.version}, id ${i.controller.id || '-'}, leader ${i.controller.leader || '<none>'}`,
    `Workloads: ${i.workloads}`,
    `Containers: ${i.containers.total} (running ${i.containers.running}, stopped ${i.containers.stopped}, pending ${i.containers.pending})`,
    `Images: ${i.images.unique} distinct, ${i.images.total} on nodes`,
    `Nodes: ${i.nodes.total} (Ready ${i.nodes.ready})`,
  ];
  const rows = i.nodes.list.map((n) => [n.name, n.state + (n.cordoned ? ',Cordoned' : ''), n.agentVersion || '-', `${n.os}/${n.arch}`, n.kernel || '-', n.cgroupVersion || '-', n.cpu, n.memory, String(n.containers)]);
  const table = rows.length > 0 ? '\n' + formatTable(['NAME', 'STATUS', 'AGENT', 'PLATFORM', 'KERNEL', 'CGROUP', 'CPU', 'MEMORY', 'CONTAINERS'], rows).replace(/^/gm, '  ').trimEnd() : '';
  const warn = i.images.unreachable.map((u) => `\nWarning: images not listed: ${u}`).join('');
  return lines.join('\n') + table + warn + '\n';
}

export const infoVerb: Verb = (program: Command, run) => {
  program
    .command('info')
    .summary('show the cluster: controller, nodes, containers and images')
    .description('Show the controller and who leads, each node (state, agent version, kernel, cgroup version, capacity, containers) and counts of workloads, containers and images.')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .addHelpText('after', `
Examples:
  berth info
  berth info -o json`)
    .action(run<{ output?: string }>(async (ctx, _cmd, opts) => runInfo(ctx, opts.output)));
};
