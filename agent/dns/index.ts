/**
 * agent/dns: the node's DNS resolver for containers on the node bridge:
 * service names (`NAME`, `NAME.berth`) from cluster state, other names
 * forwarded to the node's resolvers. The wire format is written here
 * (codec.ts); socket binding in the node's namespace comes from agent/sys.
 */
export * from './codec.js';
export * from './resolver.js';
export * from './directory.js';
export * from './node.js';
