import assert from 'node:assert/strict';
import { containerStatusText } from '../../cli/containers.js';
import { Container, ContainerSpec, ContainerStatus } from '../../proto/gen/berth/v1/types.js';

describe('cli/containers draining status', () => {
  it('shows Draining with the uptime when a running replica is draining', () => {
    const c: Container = {
      ...Container.fromJSON({}), id: 'abcdef0123456789abcdef', name: 'web-0-abcde', workload: 'web', createdUnixMs: 1_000, spec: ContainerSpec.fromJSON({ image: 'busybox' }),
      status: { ...ContainerStatus.fromJSON({}), state: 3, startedUnixMs: 1_000, health: 'healthy', draining: true },
    };
    assert.equal(containerStatusText(c, 181_000), 'Draining (up 3 minutes)');
    assert.equal(containerStatusText({ ...c, status: { ...c.status!, draining: false } }, 181_000), 'Up 3 minutes (healthy)');
  });
});
