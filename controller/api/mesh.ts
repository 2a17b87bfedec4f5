/**
 * Apply-time check of the routing mesh's host ports: a workload's
 * `spec.ports[].publish` opens that port/protocol on every node (agents'
 * `ip berth_svc`), so no two workloads may publish the same one. Checked
 * before anything is stored: an apply with a clash changes nothing.
 */
import { ValidationError, type FieldProblem } from '../../lib/index.js';
import type { WorkloadSpec } from '../../proto/gen/berth/v1/types.js';

/** "PORT/PROTO" of each published port of a spec, with its index in spec.ports. */
function publishedKeys(spec: WorkloadSpec | undefined): { key: string; index: number }[] {
  return (spec?.ports ?? []).flatMap((p, index) => (p.publish > 0 ? [{ key: `${p.publish}/${p.protocol === 'udp' ? 'udp' : 'tcp'}`, index }] : []));
}

/**
 * Throws ValidationError (one problem per clash, `spec.ports[i].publish` of
 * the document that loses) when a document publishes a host port/protocol
 * that another workload publishes: one stored and not replaced by this
 * apply, or an earlier document of the same apply.
 */
export function checkPublishedPorts(
  docs: readonly { name: string; spec: WorkloadSpec }[],
  stored: ReadonlyMap<string, { spec?: WorkloadSpec | undefined }>,
  opts: { source?: string } = {},
): void {
  const applied = new Set(docs.map((d) => d.name));
  const owners = new Map<string, string>();
  for (const [name, w] of [...stored].sort(([a], [b]) => a.localeCompare(b))) {
    if (applied.has(name)) continue;
    for (const { key } of publishedKeys(w.spec)) if (!owners.has(key)) owners.set(key, name);
  }
  const problems: FieldProblem[] = [];
  docs.forEach((d, document) => {
    for (const { key, index } of publishedKeys(d.spec)) {
      const owner = owners.get(key);
      if (owner !== undefined && owner !== d.name) {
        problems.push({
          ...(docs.length > 1 ? { document } : {}),
          path: `spec.ports[${index}].publish`,
          message: `workload "${d.name}" cannot publish host port ${key}: workload "${owner}" already publishes it (a published port is open on every node, for one workload); expected a host port no other workload publishes`,
        });
      } else {
        owners.set(key, d.name);
      }
    }
  });
  if (problems.length > 0) throw new ValidationError(problems, opts.source ? { source: opts.source } : {});
}
