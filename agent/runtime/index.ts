/**
 * agent/runtime: runs containers from OCI bundles through agent/sys (the
 * berth-helper shim), with cgroups, logs and re-adoption after a restart.
 * See runtime.ts for the lifecycle and docs/runtime.md for the design.
 */
export * from './runtime.js';
export * from './cgroups.js';
export * from './oci.js';
export * from './logs.js';
export * from './bundle.js';
export * from './errors.js';
