/**
 * Connection draining of workload replicas (spec.drainSeconds).
 *
 * When a replica that serves ports is stopped or removed for any reason other
 * than its own exit (rolling-update replacement, scale down, node drain,
 * `berth rm -f`, workload delete), its agent first marks it draining: it is
 * reported at once, every node drops it from its service tables on the next
 * poll, and it keeps running for the drain delay so connections already made
 * finish while no new ones arrive. Then the stop signal and the grace period
 * follow as usual.
 *
 * The delay must cover the propagation: agent report -> controller -> every
 * agent's next service poll (1 s) -> table replace. An unset value means the
 * default: DEFAULT_DRAIN_SECONDS for a replica with ports, 0 otherwise. The
 * validated spec keeps the field only when it differs from that default, so
 * two files that mean the same thing give the same spec (and revision).
 */

/** Drain delay of a workload with ports when spec.drainSeconds is not set. */
export const DEFAULT_DRAIN_SECONDS = 3;
/**
 * Longest drain delay. The controller's calls that stop or remove a replica
 * have a deadline of 15 s (plus the grace period); the drain happens inside
 * them. Requests that run longer get the grace period after the stop signal.
 */
export const MAX_DRAIN_SECONDS = 10;

/** The drain delay in force for a spec with these ports and drainSeconds (unset = the default). */
export function drainSecondsFor(spec: { ports: readonly unknown[]; drainSeconds?: number | undefined }): number {
  return spec.drainSeconds ?? (spec.ports.length > 0 ? DEFAULT_DRAIN_SECONDS : 0);
}
