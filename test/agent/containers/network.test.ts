/**
 * The manager with a container network: every attempt joins the namespace the
 * network gives, the address shows in the status, http and tcp health probes
 * reach the container there, and removal tears the network down. The network
 * here is a test one: a namespace made with `ip netns add` and a veth pair
 * with a /30 from 10.254.0.0/16 (traffic stays between the host and that
 * namespace; the namespace has no default route).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readlinkSync, statSync } from 'node:fs';
import { startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import { ContainerState } from '../../../proto/gen/berth/v1/types.js';
import type { ContainerNetwork } from '../../../agent/containers/index.js';
import { AgentStack, eventually, newId } from './stack.js';
import { Api, runRequest } from './grpc.js';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

class TestNetwork implements ContainerNetwork {
  readonly made = new Map<string, { ns: string; host: string }>();
  private next = Math.floor(Math.random() * 200) * 64;

  async setup(id: string): Promise<{ netnsPath: string; ipAddress: string }> {
    const ns = `agw-${id.slice(0, 8)}`;
    const host = `agwh${id.slice(0, 8)}`;
    const k = this.next;
    this.next += 4;
    const base = `10.254.${Math.floor(k / 256)}.${k % 256}`;
    const [a, b, c] = base.split('.');
    const d = Number(base.split('.')[3]);
    const hostIp = `${a}.${b}.${c}.${d + 1}`;
    const ctrIp = `${a}.${b}.${c}.${d + 2}`;
    this.made.set(id, { ns, host });
    ip('netns', 'add', ns);
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('addr', 'add', `${hostIp}/30`, 'dev', host);
    ip('link', 'set', host, 'up');
    ip('-n', ns, 'addr', 'add', `${ctrIp}/30`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    return { netnsPath: `/run/netns/${ns}`, ipAddress: ctrIp };
  }

  async teardown(id: string): Promise<void> {
    const m = this.made.get(id);
    if (!m) return;
    try {
      ip('link', 'del', m.host);
    } catch {
      // gone with the namespace
    }
    try {
      ip('netns', 'del', m.ns);
    } catch {
      // already gone
    }
    this.made.delete(id);
  }
}

describe('ContainerManager with a network', function () {
  this.timeout(120_000);
  let reg: RegistryWithImages;
  let stack: AgentStack;
  let net: TestNetwork;
  let api: Api;
  let busybox: string;

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
    busybox = reg.images['busybox']!.reference;
  });
  after(async () => {
    await reg?.stop();
  });
  beforeEach(async () => {
    net = new TestNetwork();
    stack = await new AgentStack({ network: net }).start();
    api = new Api(stack.api);
  });
  afterEach(async () => {
    try {
      await stack.destroy();
    } finally {
      for (const id of [...net.made.keys()]) await net.teardown(id);
    }
  });

  it('joins the namespace, reports the address, probes http and tcp there, and tears the network down on removal', async () => {
    const id = newId();
    const health = { intervalSeconds: 1, timeoutSeconds: 2, failureThreshold: 2, startPeriodSeconds: 0, exec: [] };
    const c = await api.run(runRequest(id, busybox, {
      command: ['sh', '-c', 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www'],
      health: { ...health, http: { port: 8080, path: '/index.html' } },
    }));
    const ns = net.made.get(id)!.ns;
    assert.equal(readlinkSync(`/proc/${c.status!.pid}/ns/net`), `net:[${statSync(`/run/netns/${ns}`).ino}]`);
    assert.match(c.status?.ipAddress ?? '', /^10\.254\.\d+\.\d+$/);
    await eventually('healthy', async () => ((await api.get(id))?.status?.health === 'healthy' ? true : undefined), 30_000);

    const closed = newId();
    await api.run(runRequest(closed, busybox, { command: ['sleep', '1000'], health: { ...health, tcp: { port: 9 } } }));
    const bad = await eventually('unhealthy', async () => {
      const x = await api.get(closed);
      return x?.status?.health === 'unhealthy' ? x : undefined;
    }, 30_000);
    assert.match(bad.status?.message ?? '', /tcp connect to 10\.254\.\d+\.\d+:9 failed/);
    assert.equal(bad.status?.state, ContainerState.CONTAINER_STATE_RUNNING);

    await api.remove(id, true);
    assert.equal(existsSync(`/run/netns/${ns}`), false, 'the namespace is left');
  });
});
