/**
 * Canonical form of a workload spec, for telling "unchanged" from "configured".
 *
 * Two specs are the same revision exactly when their canonical forms are
 * equal. The form is JSON with every field present in a fixed order, maps
 * sorted by key and absent sub-messages written as their defaults (or null
 * for health), so it does not depend on how the spec was built: straight from
 * validateWorkloadFile, decoded from protobuf, or from ts-proto's fromPartial.
 * List order is kept (command, args, ports and health exec are ordered).
 */
import { createHash } from 'node:crypto';
import { drainSecondsFor } from './drain.js';
import type { AutoscaleSpec, ObjectMeta, ScaleBehavior, WorkloadSpec } from '../../proto/gen/berth/v1/types.js';

function sortedMap(m: { [key: string]: string } | undefined): Array<[string, string]> {
  return Object.entries(m ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function canonicalBehavior(b: ScaleBehavior | undefined): unknown {
  return { stabilizationSeconds: b?.stabilizationSeconds ?? 0, maxStepPercent: b?.maxStepPercent ?? 0, maxStepReplicas: b?.maxStepReplicas ?? 0, periodSeconds: b?.periodSeconds ?? 0 };
}

function canonicalAutoscale(a: AutoscaleSpec): unknown {
  return {
    min: a.min, max: a.max, metric: a.metric, target: a.target, tolerance: a.tolerance,
    scaleUp: canonicalBehavior(a.scaleUp), scaleDown: canonicalBehavior(a.scaleDown),
    scaleToZeroIdleSeconds: a.scaleToZeroIdleSeconds ?? null,
  };
}

/** Plain value with a fixed shape, ready for JSON.stringify. */
function canonicalSpecValue(s: WorkloadSpec): unknown {
  const h = s.health;
  return {
    replicas: s.replicas ?? 0,
    image: s.image ?? '',
    command: [...(s.command ?? [])],
    args: [...(s.args ?? [])],
    env: sortedMap(s.env),
    resources: {
      cpuMillis: s.resources?.cpuMillis ?? 0,
      memoryBytes: s.resources?.memoryBytes ?? 0,
      pids: s.resources?.pids ?? 0,
    },
    ports: (s.ports ?? []).map((p) => ({
      name: p.name ?? '',
      container: p.container ?? 0,
      publish: p.publish ?? 0,
      protocol: p.protocol ?? '',
    })),
    restart: { policy: s.restart?.policy ?? '', backoffCapSeconds: s.restart?.backoffCapSeconds ?? 0 },
    health:
      h === undefined
        ? null
        : {
            http: h.http === undefined ? null : { port: h.http.port ?? 0, path: h.http.path ?? '' },
            tcp: h.tcp === undefined ? null : { port: h.tcp.port ?? 0 },
            exec: [...(h.exec ?? [])],
            intervalSeconds: h.intervalSeconds ?? 0,
            timeoutSeconds: h.timeoutSeconds ?? 0,
            failureThreshold: h.failureThreshold ?? 0,
            startPeriodSeconds: h.startPeriodSeconds ?? 0,
          },
    placement: {
      nodeSelector: sortedMap(s.placement?.nodeSelector),
      spread: s.placement?.spread ?? false,
      maxPerNode: s.placement?.maxPerNode ?? 0,
    },
    update: { maxSurge: s.update?.maxSurge ?? 0, maxUnavailable: s.update?.maxUnavailable ?? 0 },
    // Only when set (berth rollout restart), so specs without it keep their canonical text.
    ...(s.restartedUnixMs ? { restartedUnixMs: s.restartedUnixMs } : {}),
    // Only when set, so specs without it keep their canonical text.
    ...(s.network !== undefined && s.network !== '' && s.network !== 'cluster' ? { network: s.network } : {}),
    // Only when set, so specs without volumes keep their canonical text.
    ...(s.volumes && s.volumes.mounts.length > 0
      ? { volumes: s.volumes.mounts.map((m) => ({ type: m.type ?? '', source: m.source ?? '', destination: m.destination ?? '', readOnly: m.readOnly ?? false })) }
      : {}),
    // Only when set, so specs without it keep their canonical text.
    ...(s.autoscale ? { autoscale: canonicalAutoscale(s.autoscale) } : {}),
    // Only when set (it differs from the default), so specs without it keep their canonical text.
    ...(s.drainSeconds !== undefined && s.drainSeconds !== drainSecondsFor({ ports: s.ports ?? [] }) ? { drainSeconds: s.drainSeconds } : {}),
  };
}

/** Deterministic text of a spec; equal text means the same revision. */
export function canonicalWorkloadSpec(spec: WorkloadSpec): string {
  return JSON.stringify(canonicalSpecValue(spec));
}

/** True when two specs are the same revision. */
export function workloadSpecsEqual(a: WorkloadSpec, b: WorkloadSpec): boolean {
  return canonicalWorkloadSpec(a) === canonicalWorkloadSpec(b);
}

/** sha256 hex of the canonical spec: a short, stable revision fingerprint. */
export function workloadSpecFingerprint(spec: WorkloadSpec): string {
  return createHash('sha256').update(canonicalWorkloadSpec(spec)).digest('hex');
}

/**
 * Deterministic text of what a user controls for a workload: its name, its
 * labels (sorted) and its spec. uid and timestamps are left out.
 */
export function canonicalWorkload(w: { metadata?: Partial<ObjectMeta> | undefined; spec?: WorkloadSpec | undefined }): string {
  return JSON.stringify({
    name: w.metadata?.name ?? '',
    labels: sortedMap(w.metadata?.labels),
    spec: w.spec === undefined ? null : canonicalSpecValue(w.spec),
  });
}
