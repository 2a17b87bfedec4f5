/**
 * `berth inspect` output: one JSON object per container, with docker's key
 * names where docker has the same thing (Id, Name, Config, State, Mounts,
 * LogPath, RestartCount) and Berth's own where it has more (Node, Limits).
 */
import type { ContainerDetails } from '../proto/gen/berth/v1/containers.js';
import { stateName } from './containers.js';

const iso = (ms: number): string => (ms > 0 ? new Date(ms).toISOString() : '0001-01-01T00:00:00Z');

export function inspectJson(d: ContainerDetails): Record<string, unknown> {
  const c = d.container;
  const spec = c?.spec;
  const st = c?.status;
  const state = stateName(st?.state);
  return {
    Id: c?.id ?? '',
    Name: c?.name ?? '',
    Created: iso(c?.createdUnixMs ?? 0),
    Node: c?.node ?? '',
    Workload: c?.workload ?? '',
    Image: spec?.image ?? '',
    Config: {
      Image: spec?.image ?? '',
      Entrypoint: spec?.entrypoint ?? [],
      Cmd: spec?.command ?? [],
      Env: Object.entries(spec?.env ?? {}).map(([k, v]) => `${k}=${v}`),
      WorkingDir: spec?.workingDir ?? '',
      User: spec?.user ?? '',
      Labels: spec?.labels ?? {},
      Hostname: spec?.hostname ?? '',
      Tty: spec?.tty ?? false,
    },
    State: {
      Status: state,
      Running: state === 'running',
      Pid: st?.pid ?? 0,
      ExitCode: st?.exitCode ?? 0,
      Reason: st?.reason ?? '',
      Error: st?.message ?? '',
      StartedAt: iso(st?.startedUnixMs ?? 0),
      FinishedAt: iso(st?.finishedUnixMs ?? 0),
      Health: st?.health ?? '',
      IPAddress: st?.ipAddress ?? '',
    },
    RestartCount: st?.restartCount ?? 0,
    RestartPolicy: { Name: spec?.restart?.policy || 'never', BackoffCapSeconds: spec?.restart?.backoffCapSeconds ?? 0 },
    AutoRemove: spec?.autoRemove ?? false,
    Mounts: (spec?.mounts ?? []).map((m) => ({ Type: m.type, Source: m.source, Destination: m.destination, RW: !m.readOnly })),
    Limits: {
      MemoryBytes: d.limits?.memoryBytes ?? 0,
      CpuMillis: d.limits?.cpuMillis ?? 0,
      NanoCpus: (d.limits?.cpuMillis ?? 0) * 1_000_000,
      PidsLimit: d.limits?.pids ?? 0,
    },
    LogPath: d.logPath,
    Rootfs: d.rootfs,
    Bundle: d.bundle,
    RuntimeId: d.runtimeId,
  };
}
