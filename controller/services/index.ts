/** controller/services: workloads with ports as services (virtual IP, ports, endpoints with their traffic figures). */
export * from './services.js';
export * from './traffic.js';
