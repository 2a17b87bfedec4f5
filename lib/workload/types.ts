/**
 * Vocabulary of the workload file (version 1).
 *
 * A workload file is UTF-8 YAML holding one or more documents separated by
 * `---`. Each non-empty document describes one workload:
 * `apiVersion: berth/v1`, `kind: Workload`, `metadata` (name, labels) and
 * `spec` (what to run and how). Validation turns every document into a
 * ValidatedWorkload whose `spec` is a WorkloadSpec from the contract with
 * every default filled in, so two files that mean the same thing produce equal
 * specs (see canonical.ts). The full reference is docs/workload-file.md.
 */
import type { FieldProblem } from '../errors.js';
import type { ObjectMeta, WorkloadSpec } from '../../proto/gen/berth/v1/types.js';

/** The only apiVersion this code reads. */
export const WORKLOAD_API_VERSION = 'berth/v1';
/** The only kind this code reads. */
export const WORKLOAD_KIND = 'Workload';

/** Hard limits that keep a hostile file from costing much to read. */
export const WORKLOAD_LIMITS = {
  /** Largest file accepted, in bytes (UTF-8). */
  maxFileBytes: 1024 * 1024,
  /** Most documents in one file (empty documents count). */
  maxDocuments: 1000,
  /** Deepest nesting of mappings and lists (checked before the YAML is built). */
  maxNesting: 64,
  maxReplicas: 10_000,
  maxEnv: 1000,
  maxLabels: 64,
  maxPorts: 100,
  /** Most items in command, args or a health exec list. */
  maxArgs: 1000,
  /** Longest single string in command, args, env values or health exec. */
  maxStringBytes: 32 * 1024,
  maxBackoffCapSeconds: 86_400,
  maxHealthSeconds: 3600,
  maxStartPeriodSeconds: 86_400,
  maxFailureThreshold: 100,
} as const;

/** One validated document: what the controller stores for a workload. */
export interface ValidatedWorkload {
  /** 0-based index of the YAML document it came from (empty documents count). */
  document: number;
  /** name and labels are set; uid and timestamps are left empty for the controller. */
  metadata: ObjectMeta;
  /** Fully defaulted; image fully qualified. */
  spec: WorkloadSpec;
}

/** A FieldProblem with the position of the offending YAML node, when known. */
export interface WorkloadProblem extends FieldProblem {
  /** 1-based line of the node at fault. */
  line?: number;
  /** 1-based column of the node at fault. */
  column?: number;
}

export interface ValidateWorkloadFileOptions {
  /** File name shown in front of every problem (e.g. `web.yaml`). */
  source?: string;
  /** `host[:port]` used for images that name no registry host. */
  defaultRegistry?: string;
}
