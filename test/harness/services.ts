/**
 * The real services Berth's tests run against: etcd, NATS (JetStream) and an
 * OCI registry (Debian's docker-registry), each on free loopback ports with a
 * temp data dir, stopped by PID afterwards.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startProcess, tailLog, waitFor, type ManagedProcess } from './process.js';

export interface Service {
  /** Client URL: http://127.0.0.1:P (etcd, registry) or nats://127.0.0.1:P. */
  readonly url: string;
  readonly pid: number;
  readonly process: ManagedProcess;
  stop(): Promise<void>;
}

export interface RegistryService extends Service {
  /** host:port, for image references such as 127.0.0.1:5000/busybox:latest. */
  readonly host: string;
}

async function httpOk(url: string, accept: (status: number) => boolean = (s) => s === 200): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return accept(res.status);
}

async function started(proc: ManagedProcess, what: string, ready: () => Promise<boolean>): Promise<void> {
  try {
    await waitFor(`${what} to accept requests`, async () => {
      if (proc.exited()) throw new Error(`${what} exited early:\n${tailLog(proc)}`);
      return ready();
    }, 20000);
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/** A single-member etcd on loopback. */
export async function startEtcd(): Promise<Service> {
  const client = await freePort();
  const peer = await freePort();
  const url = `http://127.0.0.1:${client}`;
  const proc = startProcess({
    name: 'etcd',
    command: 'etcd',
    args: (dir) => [
      '--name', 'test',
      '--data-dir', join(dir, 'data'),
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `test=http://127.0.0.1:${peer}`,
      '--log-level', 'warn',
      '--logger', 'zap',
    ],
  });
  await started(proc, 'etcd', () => httpOk(`${url}/health`));
  return { url, pid: proc.pid, process: proc, stop: () => proc.stop() };
}

/** nats-server with JetStream on loopback. */
export async function startNats(): Promise<Service> {
  const port = await freePort();
  const monitor = await freePort();
  const proc = startProcess({
    name: 'nats',
    command: 'nats-server',
    args: (dir) => ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor), '-js', '-sd', join(dir, 'js')],
  });
  await started(proc, 'nats-server', () => httpOk(`http://127.0.0.1:${monitor}/healthz`));
  return { url: `nats://127.0.0.1:${port}`, pid: proc.pid, process: proc, stop: () => proc.stop() };
}

export interface RegistryOptions {
  /** Path of an htpasswd file (bcrypt entries, `htpasswd -Bbn`); enables Basic auth. */
  htpasswd?: string;
}

/** Debian's docker-registry (distribution 2.8) serving plain HTTP on loopback. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryService> {
  const port = await freePort();
  const debug = await freePort();
  const host = `127.0.0.1:${port}`;
  const proc = startProcess({
    name: 'registry',
    command: 'docker-registry',
    args: (dir) => {
      const config = [
        'version: 0.1',
        'log:',
        '  level: warn',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${join(dir, 'data')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${host}`,
        '  debug:',
        `    addr: 127.0.0.1:${debug}`,
        ...(opts.htpasswd ? ['auth:', '  htpasswd:', '    realm: berth-test', `    path: ${opts.htpasswd}`] : []),
      ].join('\n');
      const file = join(dir, 'config.yml');
      writeFileSync(file, config + '\n');
      return ['serve', file];
    },
  });
  await started(proc, 'docker-registry', () => httpOk(`http://${host}/v2/`, (s) => s === 200 || s === 401));
  return { url: `http://${host}`, host, pid: proc.pid, process: proc, stop: () => proc.stop() };
}
