/**
 * The workload file (version 1): validation into contract types, and the
 * canonical form used to compare specs. Reference: docs/workload-file.md.
 */
export * from './types.js';
export { validateWorkloadFile, WORKLOAD_DEFAULTS, RESTART_POLICIES, PORT_PROTOCOLS, type RestartPolicy } from './validate.js';
export { AUTOSCALE_DEFAULTS, AUTOSCALE_METRICS, autoscaleSpecProblems, type AutoscaleProblem } from './autoscale.js';
export { canonicalWorkloadSpec, canonicalWorkload, workloadSpecsEqual, workloadSpecFingerprint } from './canonical.js';
export { dnsLabelProblem, dnsSubdomainProblem, labelKeyProblem, labelValueProblem, envNameProblem, portNameProblem } from './names.js';
export { suggest, editDistance } from './suggest.js';
export { DEFAULT_DRAIN_SECONDS, MAX_DRAIN_SECONDS, drainSecondsFor } from './drain.js';
