/**
 * Errors of the scheduler. The scheduler only fails on malformed input (a
 * snapshot or request that breaks the documented shape); a replica that fits
 * nowhere is not an error but part of the plan (PlacementPlan.unplaced).
 */
import { InvalidArgumentError } from '../../lib/index.js';

/** The snapshot or the request is malformed; `field` names the part at fault. */
export class SchedulerInputError extends InvalidArgumentError {
  override name = 'SchedulerInputError';
  /** The workload being scheduled, when known. */
  readonly workload: string | undefined;
  constructor(message: string, options: { field: string; workload?: string; cause?: unknown }) {
    super(message, { field: options.field, cause: options.cause });
    this.workload = options.workload;
  }
}
