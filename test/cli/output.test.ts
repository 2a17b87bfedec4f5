import assert from 'node:assert/strict';
import { formatAge, formatBytes, formatCpu, formatLabels, formatTable, parseOutputFormat, parseSelector } from '../../cli/output.js';
import { UsageError } from '../../cli/context.js';
import { nodeTable, workloadTable } from '../../cli/get.js';
import { historyTable } from '../../cli/rollout.js';
import { NodeState, type Node, type Workload } from '../../proto/gen/berth/v1/types.js';

describe('cli/output', () => {
  it('aligns every column to its widest cell with three spaces between columns', () => {
    const text = formatTable(['NAME', 'STATUS', 'AGE'], [['web', 'Ready', '5s'], ['a-much-longer-name', 'NotReady', '3m']]);
    assert.equal(text, [
      'NAME                 STATUS     AGE',
      'web                  Ready      5s',
      'a-much-longer-name   NotReady   3m',
      '',
    ].join('\n'));
  });

  it('leaves no trailing spaces when the last cells are empty', () => {
    const text = formatTable(['A', 'B'], [['x', '']]);
    for (const line of text.split('\n')) assert.equal(line, line.trimEnd());
  });

  it('prints ages in the largest whole unit when given elapsed times', () => {
    const now = 1_000_000_000_000;
    assert.equal(formatAge(now - 5_000, now), '5s');
    assert.equal(formatAge(now - 59_999, now), '59s');
    assert.equal(formatAge(now - 3 * 60_000 - 10_000, now), '3m');
    assert.equal(formatAge(now - 2 * 3_600_000 - 1, now), '2h');
    assert.equal(formatAge(now - 4 * 86_400_000, now), '4d');
    assert.equal(formatAge(now + 10_000, now), '0s');
    assert.equal(formatAge(0, now), '<unknown>');
  });

  it('prints sizes in binary units with one decimal below 100 when given bytes', () => {
    assert.equal(formatBytes(512), '512');
    assert.equal(formatBytes(64 * 1024 * 1024), '64Mi');
    assert.equal(formatBytes(24684084 * 1024), '23.5Gi');
    assert.equal(formatBytes(8_375_000_000), '7.8Gi');
    assert.equal(formatBytes(150 * 1024 * 1024 * 1024), '150Gi');
    assert.equal(formatBytes(1536), '1.5Ki');
  });

  it('prints whole cores as numbers and fractions as millicores', () => {
    assert.equal(formatCpu(2000), '2');
    assert.equal(formatCpu(500), '500m');
    assert.equal(formatCpu(1500), '1500m');
    assert.equal(formatCpu(0), '-');
  });

  it('sorts labels by key and prints <none> when there are none', () => {
    assert.equal(formatLabels({ zone: 'a', app: 'web' }), 'app=web,zone=a');
    assert.equal(formatLabels({}), '<none>');
  });

  it('merges repeated selectors and rejects a pair without "="', () => {
    assert.deepEqual(parseSelector(['app=web,tier=front', 'zone=a']), { app: 'web', tier: 'front', zone: 'a' });
    assert.throws(() => parseSelector(['app']), (err: unknown) => err instanceof UsageError && /key=value/.test(err.message));
  });

  it('rejects an output format that the verb does not offer', () => {
    assert.equal(parseOutputFormat('JSON'), 'json');
    assert.throws(() => parseOutputFormat('wide', ['table', 'json']), /expected one of table, json, got "wide"/);
  });

  it('shows READY as ready/desired and the image in the workload table', () => {
    const now = Date.now();
    const w: Workload = {
      metadata: { name: 'web', labels: { app: 'web' }, uid: 'u', createdUnixMs: now - 120_000, updatedUnixMs: now },
      spec: { replicas: 3, image: '127.0.0.1:5000/web:latest', command: [], args: [], env: {}, ports: [], resources: { cpuMillis: 500, memoryBytes: 64 * 1024 * 1024, pids: 0 } },
      status: { revision: 2, desired: 3, running: 2, ready: 1, pending: 1, conditions: [] },
    };
    const lines = workloadTable([w], false, now).trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^NAME\s+READY\s+REVISION\s+IMAGE\s+AGE$/);
    assert.match(lines[1] ?? '', /^web\s+1\/3\s+2\s+127\.0\.0\.1:5000\/web:latest\s+2m$/);
    const wide = workloadTable([w], true, now);
    assert.match(wide, /500m\s+64Mi\s+app=web/);
  });

  it('shows Ready/NotReady, human memory and the agent version in the node table', () => {
    const now = Date.now();
    const node = (name: string, state: NodeState): Node => ({
      spec: { name, labels: { zone: 'a' }, address: '127.0.0.1:7071', capacity: { cpuMillis: 2000, memoryBytes: 8_375_000_000, pids: 32768 }, cordoned: false, agentVersion: '0.1.0', os: 'linux', arch: 'amd64', kernel: '6.1', cgroupVersion: 'hybrid' },
      status: {
        state, lastHeartbeatUnixMs: now - 1000, registeredUnixMs: now - 3 * 3_600_000, reason: '', containers: 0,
        allocated: { cpuMillis: name === 'n1' ? 1500 : 0, memoryBytes: name === 'n1' ? 512 * 1024 * 1024 : 0, pids: name === 'n1' ? 300 : 0 },
        replicas: name === 'n1' ? 3 : 0,
      },
    });
    const text = nodeTable([node('n1', NodeState.NODE_STATE_READY), node('n2', NodeState.NODE_STATE_NOT_READY)], false, now);
    const lines = text.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^NAME\s+STATUS\s+ADDRESS\s+CPU\s+MEMORY\s+PIDS\s+REPLICAS\s+LABELS\s+AGE\s+VERSION$/);
    assert.match(lines[1] ?? '', /^n1\s+Ready\s+127\.0\.0\.1:7071\s+1500m\/2\s+512Mi\/7\.8Gi\s+300\/32768\s+3\s+zone=a\s+3h\s+0\.1\.0$/);
    assert.match(lines[2] ?? '', /^n2\s+NotReady\s+127\.0\.0\.1:7071\s+0\/2\s+0\/7\.8Gi\s+0\/32768\s+0\s/);
    assert.match(nodeTable([node('n1', NodeState.NODE_STATE_READY)], true, now), /hybrid\s+0\s+1s ago\s+-$/m);
  });

  it('lists revisions oldest first in the history table', () => {
    const spec = { replicas: 2, image: 'r/web:1', command: [], args: [], env: {}, ports: [] };
    const text = historyTable([
      { workload: 'web', revision: 2, spec: { ...spec, image: 'r/web:2' }, createdUnixMs: Date.now(), cause: 'scale' },
      { workload: 'web', revision: 1, spec, createdUnixMs: Date.now(), cause: 'apply' },
    ]);
    const lines = text.trimEnd().split('\n');
    assert.match(lines[1] ?? '', /^1\s+apply\s+r\/web:1\s+2\s+0s$/);
    assert.match(lines[2] ?? '', /^2\s+scale\s+r\/web:2/);
  });
});
