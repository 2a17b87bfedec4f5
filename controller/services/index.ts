/** controller/services: workloads with ports as services (virtual IP, ports, endpoints). */
export * from './services.js';
