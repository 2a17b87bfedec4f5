/**
 * agent/network: container networks (CNI bridge + host-local + loopback),
 * published ports (the node's nft table) and host-gw routes to other nodes'
 * container subnets. Kernel work goes through agent/sys's NetOps.
 */
export * from './errors.js';
export * from './nft.js';
export * from './network.js';
export * from './routes.js';
export * from './vxlan.js';
export * from './disabled.js';
export * from './services.js';
export * from './traffic.js';
export * from './activator.js';
