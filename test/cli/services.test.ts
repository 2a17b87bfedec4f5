/** cli/services: the `berth get services` table and the `berth describe service` text (with published ports and traffic figures). */
import assert from 'node:assert/strict';
import { describeService, figureText, serviceTable } from '../../cli/services.js';
import type { Service } from '../../proto/gen/berth/v1/services.js';

const web: Service = {
  name: 'web',
  scaleToZero: false,
  virtualIp: '10.96.4.2',
  ports: [{ name: 'http', port: 80, protocol: 'tcp', targetPort: 80, published: 8080 }, { name: '', port: 53, protocol: 'udp', targetPort: 53, published: 0 }],
  endpoints: [
    { containerId: 'a', containerName: 'web-a', node: 'node-1', address: '10.244.1.2', ready: true, state: 'CONTAINER_STATE_RUNNING', health: 'healthy', draining: false, requestsPerSecond: 12.34, connectionsPerSecond: 2.5, openConnections: 3 },
    { containerId: 'b', containerName: 'web-b', node: 'node-2', address: '10.244.2.2', ready: false, state: 'CONTAINER_STATE_RUNNING', health: 'unhealthy', draining: false, requestsPerSecond: 0.25, connectionsPerSecond: 0, openConnections: 0 },
  ],
};

describe('serviceTable', () => {
  it('shows name, VIP, ports (published ones as HOSTPORT->), ready/total endpoints and traffic totals, and the ready addresses when wide', () => {
    const lines = serviceTable([web, { name: 'empty', virtualIp: '', ports: [], endpoints: [], scaleToZero: false }], false).trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^NAME\s+VIP\s+PORTS\s+ENDPOINTS\s+REQ\/S\s+CONN\/S\s+OPEN$/);
    assert.match(lines[1] ?? '', /^web\s+10\.96\.4\.2\s+8080->80\/tcp,53\/udp\s+1\/2\s+13\s+2\.5\s+3$/);
    assert.match(lines[2] ?? '', /^empty\s+-\s+-\s+0\/0\s+0\s+0\s+0$/);
    const wide = serviceTable([web], true).trimEnd().split('\n');
    assert.match(wide[0] ?? '', /\sOPEN\s+ADDRESSES$/);
    assert.match(wide[1] ?? '', /\s1\/2\s+13\s+2\.5\s+3\s+10\.244\.1\.2$/);
  });
});

describe('describeService', () => {
  it('prints the address, the ports, the traffic and one line per endpoint with node, state, health, readiness and rates', () => {
    const text = describeService(web);
    assert.match(text, /^Name:\s+web$/m);
    assert.match(text, /^Address:\s+10\.96\.4\.2$/m);
    assert.match(text, /^Ports:\s+80\/tcp \(http\) -> 80, published on host port 8080; 53\/udp -> 53$/m);
    assert.match(text, /^Endpoints:\s+1\/2 ready$/m);
    assert.match(text, /^Traffic:\s+13 requests\/s, 2\.5 new connections\/s, 3 open connections$/m);
    assert.match(text, /^\s+CONTAINER\s+NODE\s+ADDRESS\s+STATE\s+HEALTH\s+READY\s+REQ\/S\s+CONN\/S\s+OPEN$/m);
    assert.match(text, /^\s+web-a\s+node-1\s+10\.244\.1\.2\s+running\s+healthy\s+yes\s+12\s+2\.5\s+3$/m);
    assert.match(text, /^\s+web-b\s+node-2\s+10\.244\.2\.2\s+running\s+unhealthy\s+no\s+0\.3\s+0\s+0$/m);
  });

  it('marks a draining endpoint', () => {
    const text = describeService({ ...web, endpoints: [{ ...web.endpoints[0]!, ready: false, draining: true }] });
    assert.match(text, /^\s+web-a\s+node-1\s+\S+\s+running\s+healthy\s+no \(draining\)\s+12/m);
  });
});

describe('figureText', () => {
  it('prints whole numbers from 10 up, one decimal below and 0 for nothing or nonsense', () => {
    assert.deepEqual([0, 0.04, 0.25, 2.5, 9.96, 10.4, 1234.5, -3, Number.NaN].map(figureText), ['0', '0', '0.3', '2.5', '10', '10', '1235', '0', '0']);
  });
});
