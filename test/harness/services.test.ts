import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { startEtcd, startNats, startRegistry, type Service } from './index.js';

describe('test harness services', () => {
  const started: Service[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.stop()));
  });

  it('starts etcd, NATS and a registry on loopback and removes their data when stopped', async () => {
    const [etcd, nats, registry] = await Promise.all([startEtcd(), startNats(), startRegistry()]);
    started.push(etcd, nats, registry);
    assert.match(etcd.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(nats.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${registry.url}/v2/`);
    assert.equal(res.status, 200);
    const dirs = [etcd.process.dir, nats.process.dir, registry.process.dir];
    await Promise.all(started.splice(0).map((s) => s.stop()));
    for (const d of dirs) assert.equal(existsSync(d), false, `${d} removed`);
    for (const s of [etcd, nats, registry]) assert.ok(s.process.exited());
  });
});
