/** cli/services: the `berth get services` table and the `berth describe service` text. */
import assert from 'node:assert/strict';
import { describeService, serviceTable } from '../../cli/services.js';
import type { Service } from '../../proto/gen/berth/v1/services.js';

const web: Service = {
  name: 'web',
  scaleToZero: false,
  virtualIp: '10.96.4.2',
  ports: [{ name: 'http', port: 80, protocol: 'tcp', targetPort: 80, published: 0 }, { name: '', port: 53, protocol: 'udp', targetPort: 53, published: 0 }],
  endpoints: [
    { containerId: 'a', containerName: 'web-a', node: 'node-1', address: '10.244.1.2', ready: true, state: 'CONTAINER_STATE_RUNNING', health: 'healthy', draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0 },
    { containerId: 'b', containerName: 'web-b', node: 'node-2', address: '10.244.2.2', ready: false, state: 'CONTAINER_STATE_RUNNING', health: 'unhealthy', draining: false, requestsPerSecond: 0, connectionsPerSecond: 0, openConnections: 0 },
  ],
};

describe('serviceTable', () => {
  it('shows name, VIP, ports and ready/total endpoints, and the ready addresses when wide', () => {
    const lines = serviceTable([web, { name: 'empty', virtualIp: '', ports: [], endpoints: [], scaleToZero: false }], false).trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^NAME\s+VIP\s+PORTS\s+ENDPOINTS$/);
    assert.match(lines[1] ?? '', /^web\s+10\.96\.4\.2\s+80\/tcp,53\/udp\s+1\/2$/);
    assert.match(lines[2] ?? '', /^empty\s+-\s+-\s+0\/0$/);
    const wide = serviceTable([web], true).trimEnd().split('\n');
    assert.match(wide[0] ?? '', /\sADDRESSES$/);
    assert.match(wide[1] ?? '', /\s1\/2\s+10\.244\.1\.2$/);
  });
});

describe('describeService', () => {
  it('prints the address, the ports and one line per endpoint with node, state, health and readiness', () => {
    const text = describeService(web);
    assert.match(text, /^Name:\s+web$/m);
    assert.match(text, /^Address:\s+10\.96\.4\.2$/m);
    assert.match(text, /^Ports:\s+80\/tcp \(http\) -> 80, 53\/udp -> 53$/m);
    assert.match(text, /^Endpoints:\s+1\/2 ready$/m);
    assert.match(text, /^\s+web-a\s+node-1\s+10\.244\.1\.2\s+running\s+healthy\s+yes$/m);
    assert.match(text, /^\s+web-b\s+node-2\s+10\.244\.2\.2\s+running\s+unhealthy\s+no$/m);
  });
});
