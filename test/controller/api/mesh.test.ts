/**
 * WorkloadService.Apply refuses a workload whose published port/protocol
 * another workload publishes (routing mesh: one workload per host port on
 * every node), naming both workloads and the field, with nothing stored.
 * Real etcd and NATS behind the real API server.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { useApiServer } from './api-fixture.js';
import { call, grpcError, manifest, type Clients } from '../helpers.js';

const ports = (...entries: string[]) => ['  ports:', ...entries.map((e) => `    - ${e}`)].join('\n');

describe('WorkloadService.Apply (published ports)', () => {
  const f = useApiServer('ctl-mesh');
  let c: Clients;
  beforeEach(() => {
    c = f.c;
  });

  const apply = (text: string, dryRun = false) => call(c.workloads, c.workloads.apply, { manifest: text, source: 'test.yaml', dryRun });
  const names = async () => (await call(c.workloads, c.workloads.list, { selector: {} })).workloads.map((w) => w.metadata?.name).sort();

  it('refuses a second workload publishing the same port and protocol, naming both and the field, and stores nothing', async () => {
    await apply(manifest('web', { extra: ports('{ container: 80, publish: 8080 }') }));
    const bad = `${manifest('other')}---\n${manifest('api', { extra: ports('{ container: 90, publish: 9090 }', '{ container: 81, publish: 8080 }') })}`;
    await assert.rejects(apply(bad), grpcError(grpc.status.INVALID_ARGUMENT,
      /^test\.yaml: document 2: spec\.ports\[1\]\.publish: workload "api" cannot publish host port 8080\/tcp: workload "web" already publishes it/));
    await assert.rejects(apply(bad, true), grpcError(grpc.status.INVALID_ARGUMENT, /workload "web" already publishes it/));
    assert.deepEqual(await names(), ['web'], 'nothing of the refused file is stored');
  });

  it('refuses two documents of one file publishing the same port', async () => {
    const bad = `${manifest('a', { extra: ports('{ container: 53, publish: 5353, protocol: udp }') })}---\n${manifest('b', { extra: ports('{ container: 53, publish: 5353, protocol: udp }') })}`;
    await assert.rejects(apply(bad), grpcError(grpc.status.INVALID_ARGUMENT, /document 2: spec\.ports\[0\]\.publish: workload "b" cannot publish host port 5353\/udp: workload "a" already publishes it/));
    assert.deepEqual(await names(), []);
  });

  it('refuses an undo to a revision whose published port another workload took meanwhile', async () => {
    await apply(manifest('web', { extra: ports('{ container: 80, publish: 8080 }') }));
    await apply(manifest('web', { extra: ports('{ container: 80, publish: 8081 }') }));
    await apply(manifest('api', { extra: ports('{ container: 80, publish: 8080 }') }));
    await assert.rejects(call(c.workloads, c.workloads.undo, { name: 'web', toRevision: 1 }),
      grpcError(grpc.status.INVALID_ARGUMENT, /spec\.ports\[0\]\.publish: workload "web" cannot publish host port 8080\/tcp: workload "api" already publishes it/));
    const web = await call(c.workloads, c.workloads.get, { name: 'web' });
    assert.equal(web.spec?.ports[0]?.publish, 8081, 'web is unchanged');
    assert.equal(web.status?.revision, 2);
  });

  it('accepts the same port with the other protocol, a re-apply of the owner, and the port once its owner is deleted or moved', async () => {
    await apply(manifest('web', { extra: ports('{ container: 80, publish: 8080 }') }));
    await apply(manifest('dns', { extra: ports('{ container: 80, publish: 8080, protocol: udp }') }));
    await apply(manifest('web', { replicas: 2, extra: ports('{ container: 80, publish: 8080 }') }));
    // One apply moves the port from web to api: web's new spec in the same file frees it.
    await apply(`${manifest('web', { extra: ports('{ container: 80, publish: 8081 }') })}---\n${manifest('api', { extra: ports('{ container: 80, publish: 8080 }') })}`);
    await call(c.workloads, c.workloads.delete, { names: ['api'], ignoreNotFound: false });
    await apply(manifest('again', { extra: ports('{ container: 80, publish: 8080 }') }));
    assert.deepEqual(await names(), ['again', 'dns', 'web']);
  });
});
