/** agent/metrics: per-replica load samples for the autoscaler (published on NATS by agent/status). */
export { MetricsSampler } from './sampler.js';
export type { MetricsSink, ReplicaSource, SamplerOptions, TrafficSource } from './sampler.js';
