/**
 * Restart policy and backoff, pure functions.
 *
 * Vocabulary: a *failure streak* counts restarts since the container last ran
 * for at least `healthyResetMs` (10 s). The delay before the next start is
 * 1 s doubled per restart of the streak, capped at the spec's
 * `backoff_cap_seconds` (default 300 s).
 */
export type RestartPolicy = 'always' | 'on-failure' | 'never';

export const RESTART_POLICIES: readonly RestartPolicy[] = ['always', 'on-failure', 'never'];
export const DEFAULT_BACKOFF_CAP_SECONDS = 300;
export const INITIAL_BACKOFF_MS = 1000;
export const HEALTHY_RESET_MS = 10_000;

/** Whether a container that exited with `exitCode` is started again. */
export function shouldRestart(policy: string, exitCode: number, oomKilled: boolean): boolean {
  switch (policy) {
    case 'always':
      return true;
    case 'on-failure':
      return exitCode !== 0 || oomKilled;
    default:
      return false;
  }
}

export interface BackoffDecision {
  delayMs: number;
  /** The streak after this restart. */
  streak: number;
}

/** The delay before the next start, given the streak so far and how long the last run lasted. */
export function nextBackoff(streak: number, ranMs: number, capSeconds: number, initialMs = INITIAL_BACKOFF_MS, resetMs = HEALTHY_RESET_MS): BackoffDecision {
  const s = ranMs >= resetMs ? 0 : streak;
  const capMs = (capSeconds > 0 ? capSeconds : DEFAULT_BACKOFF_CAP_SECONDS) * 1000;
  const delayMs = Math.min(capMs, initialMs * 2 ** Math.min(s, 30));
  return { delayMs, streak: s + 1 };
}
