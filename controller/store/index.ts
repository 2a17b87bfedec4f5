/** The controller's desired-state store and leader election. See types.ts for the vocabulary. */
export * from './types.js';
export { ConflictError, EtcdUnavailableError } from './errors.js';
export { MemoryStore, SoloElection } from './memory.js';
export { EtcdStore, CONFLICT_ATTEMPTS, MAX_TXN_OPS, type EtcdStoreOptions } from './etcd.js';
export { EtcdElection, LEASE_TTL_SECONDS, STEP_DOWN_AFTER_MS, type EtcdElectionOptions } from './election.js';
export { KeyLayout, DEFAULT_PREFIX } from './keys.js';
export { canonicalSpec, matchesSelector, checkContainerId } from './plan.js';
export { EtcdVipStore, DEFAULT_SERVICE_CIDR, checkRangesApart, chooseVip, parseServiceCidr } from './vips.js';
