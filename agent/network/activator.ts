/**
 * Scale from zero on the node: the first connection to a service at zero
 * replicas is held, not refused, while a replica starts.
 *
 * Vocabulary:
 *   hold listener   a TCP listener of the agent in the node's network
 *                   namespace (ephemeral port, bound on every address: the
 *                   bridge and its gateway address appear only with the
 *                   node's first container), one per tcp port of every
 *                   service with `scale_to_zero`; it serves only
 *                   connections addressed to the bridge gateway (what the
 *                   table DNATs there) and closes any other at once. While
 *                   the service has no ready
 *                   endpoint, the service table (ServiceSync) DNATs the
 *                   service address and the published port to it.
 *   held connection a client connection accepted by a hold listener and not
 *                   yet forwarded: paused (what the client sends meanwhile
 *                   waits in the socket), bounded by `holdTimeoutMs`.
 *   activation      the request for a replica, sent through the
 *                   ActivationSink at the first held connection and then
 *                   every second while connections for the service are held
 *                   or forwarded (each also counts as activity, so the
 *                   service is not scaled back to zero under them).
 *
 * Lifecycle: new Activator(opts) -> prepare(list) on every service list the
 * agent reads (opens and closes hold listeners, learns endpoints, returns
 * the hold targets) -> close() or opts.signal (closes every listener and
 * socket). While connections are held the activator also asks the
 * controller for the one service every `pollMs` (ServiceLookup), so a ready
 * replica is seen within that, not at the next table sync. Once a ready
 * endpoint is known, each held connection is connected to
 * ENDPOINT:targetPort from the gateway address (the source a container on
 * this node would have; retrying while the replica's server does not
 * accept yet) and piped both ways. Several held connections share one activation.
 * UDP ports are not held (their traffic is rejected as before).
 */
import type net from 'node:net';
import { credentials, Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { fromGrpcError, messageOf, type Logger } from '../../lib/index.js';
import { ServiceServiceClient, type ListServicesResponse, type Service } from '../../proto/gen/berth/v1/services.js';
import type { TcpOps } from '../sys/index.js';
import type { HoldTarget, ServiceActivator } from './services.js';

/** Asks the cluster for a replica of `service` (the agent publishes on NATS). Must not throw. */
export interface ActivationSink {
  activate(service: string, held: number): void;
}

/** One service by name from the controller; undefined when it does not exist. */
export interface ServiceLookup {
  getService(name: string, opts: { signal?: AbortSignal }): Promise<Service | undefined>;
}

export interface ActivatorOptions {
  /** Opens listeners and connections in the node's network namespace. */
  tcp: TcpOps;
  /** The bridge gateway address: where the service table sends held connections (the only local address served). */
  address: string;
  /** The address the hold listeners bind (default 0.0.0.0: the gateway may not exist yet). */
  listenAddress?: string;
  sink: ActivationSink;
  lookup?: ServiceLookup;
  logger: Logger;
  /** A held connection is closed after this long without a ready endpoint (default 30 s). */
  holdTimeoutMs?: number;
  /** Poll of the held service while connections wait (default 100 ms). */
  pollMs?: number;
  /** Activity messages while connections are held or forwarded (default 1000 ms). */
  activityMs?: number;
  /** At most this many connections held at once on the node, all services together (default 1024); more are closed at once. */
  maxHeld?: number;
  /** Aborting closes everything (agent shutdown). */
  signal?: AbortSignal;
}

interface HoldPort {
  key: string;
  server: net.Server;
  port: number;
  targetPort: number;
}

interface HeldConnection {
  socket: net.Socket;
  targetPort: number;
  deadline: number;
  timer: NodeJS.Timeout;
  connecting: boolean;
}

interface Hold {
  name: string;
  ports: Map<string, HoldPort>;
  /** Addresses of the ready endpoints, as last seen. */
  endpoints: string[];
  waiting: Set<HeldConnection>;
  forwarded: Set<net.Socket>;
  polling: boolean;
  activity: NodeJS.Timeout | undefined;
}

const RETRY_CODES = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

export class Activator implements ServiceActivator {
  private readonly holds = new Map<string, Hold>();
  private readonly log: Logger;
  private readonly holdTimeoutMs: number;
  private readonly pollMs: number;
  private readonly activityMs: number;
  private closed = false;
  private readonly abort = new AbortController();
  /** Counters for tests and logs. */
  readonly stats = { held: 0, forwarded: 0, gaveUp: 0, activations: 0, refused: 0 };

  constructor(private readonly opts: ActivatorOptions) {
    this.log = opts.logger.child({ component: 'activator' });
    this.holdTimeoutMs = opts.holdTimeoutMs ?? 30_000;
    this.pollMs = opts.pollMs ?? 100;
    this.activityMs = opts.activityMs ?? 1000;
    if (opts.signal?.aborted) this.close();
    else opts.signal?.addEventListener('abort', () => this.close(), { once: true });
  }

  /** Services that currently have hold listeners. */
  get services(): string[] {
    return [...this.holds.keys()].sort();
  }

  /** Connections held now (all services). */
  get heldCount(): number {
    let n = 0;
    for (const h of this.holds.values()) n += h.waiting.size;
    return n;
  }

  /**
   * Follows one service list: hold listeners for every tcp port of every
   * scale-to-zero service, none for the rest; wakes held connections whose
   * service now has a ready endpoint. Returns the hold targets by service name.
   */
  async prepare(res: ListServicesResponse, opts: { signal?: AbortSignal } = {}): Promise<ReadonlyMap<string, HoldTarget>> {
    const out = new Map<string, HoldTarget>();
    if (this.closed) return out;
    const wanted = new Map(res.services.filter((s) => s.scaleToZero).map((s) => [s.name, s]));
    for (const [name, hold] of this.holds) {
      if (!wanted.has(name)) this.drop(hold, 'service gone or no longer scales to zero');
    }
    for (const s of wanted.values()) {
      opts.signal?.throwIfAborted();
      let hold = this.holds.get(s.name);
      if (!hold) {
        hold = { name: s.name, ports: new Map(), endpoints: [], waiting: new Set(), forwarded: new Set(), polling: false, activity: undefined };
        this.holds.set(s.name, hold);
      }
      const keys = new Set<string>();
      for (const p of s.ports) {
        if (p.protocol !== 'tcp') continue;
        const key = `${p.port}/tcp`;
        keys.add(key);
        const targetPort = p.targetPort > 0 ? p.targetPort : p.port;
        const have = hold.ports.get(key);
        if (have) {
          have.targetPort = targetPort;
          continue;
        }
        try {
          const server = await this.opts.tcp.listen(this.opts.listenAddress ?? '0.0.0.0', 0);
          const addr = server.address();
          const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
          if (this.closed || this.holds.get(s.name) !== hold) {
            server.close();
            continue;
          }
          const hp: HoldPort = { key, server, port, targetPort };
          server.on('connection', (socket) => this.accept(hold, hp, socket));
          server.on('error', (err) => this.log.warn('hold listener error', { service: s.name, port: key, reason: messageOf(err) }));
          hold.ports.set(key, hp);
          this.log.info('holding connections for a service at zero replicas', { service: s.name, port: key, listener: `${this.opts.address}:${port}` });
        } catch (err) {
          this.log.error('failed to open a hold listener', { service: s.name, port: key, address: this.opts.address, reason: messageOf(err) });
        }
      }
      for (const [key, hp] of hold.ports) {
        if (!keys.has(key)) {
          hp.server.close();
          hold.ports.delete(key);
        }
      }
      this.learn(hold, s);
      if (hold.ports.size > 0) {
        out.set(s.name, { address: this.opts.address, ports: Object.fromEntries([...hold.ports.values()].map((hp) => [hp.key, hp.port])) });
      }
    }
    return out;
  }

  /** Closes every listener and every held or forwarded connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    for (const hold of this.holds.values()) this.drop(hold, 'agent stopping');
    this.holds.clear();
  }

  private drop(hold: Hold, why: string): void {
    for (const hp of hold.ports.values()) hp.server.close();
    hold.ports.clear();
    if (hold.waiting.size > 0) this.log.warn('closing held connections', { service: hold.name, held: hold.waiting.size, reason: why });
    for (const c of hold.waiting) {
      clearTimeout(c.timer);
      c.socket.destroy();
    }
    hold.waiting.clear();
    if (this.closed) for (const s of hold.forwarded) s.destroy();
    if (hold.activity) clearInterval(hold.activity);
    hold.activity = undefined;
    if (this.holds.get(hold.name) === hold) this.holds.delete(hold.name);
  }

  private learn(hold: Hold, s: Service): void {
    hold.endpoints = s.endpoints.filter((e) => e.ready && e.address !== '').map((e) => e.address);
    if (hold.endpoints.length > 0) for (const c of hold.waiting) void this.forward(hold, c);
  }

  private accept(hold: Hold, hp: HoldPort, socket: net.Socket): void {
    socket.pause();
    // The client may finish sending before the replica answers: keep our side open for the answer.
    socket.allowHalfOpen = true;
    socket.on('error', () => undefined);
    if (this.closed || this.holds.get(hold.name) !== hold) {
      socket.destroy();
      return;
    }
    if (socket.localAddress !== this.opts.address && socket.localAddress !== `::ffff:${this.opts.address}`) {
      // Not sent here by the service table (someone reached the listener's port on another address): refuse.
      this.log.debug('closed a connection to a hold listener on another address', { service: hold.name, local: socket.localAddress ?? '' });
      socket.destroy();
      return;
    }
    if (this.heldCount >= (this.opts.maxHeld ?? 1024)) {
      // Hostile or not, a flood must not pile up sockets while nothing can serve them.
      this.stats.refused++;
      if (this.stats.refused === 1 || this.stats.refused % 100 === 0) this.log.warn('too many held connections; closing new ones', { service: hold.name, held: this.heldCount, refused: this.stats.refused });
      socket.destroy();
      return;
    }
    const c: HeldConnection = {
      socket,
      targetPort: hp.targetPort,
      deadline: Date.now() + this.holdTimeoutMs,
      connecting: false,
      timer: setTimeout(() => this.giveUp(hold, c), this.holdTimeoutMs),
    };
    hold.waiting.add(c);
    socket.once('close', () => {
      if (hold.waiting.delete(c)) clearTimeout(c.timer);
    });
    this.stats.held++;
    this.log.info('connection held for a service', { service: hold.name, port: hp.key, held: hold.waiting.size, endpoints: hold.endpoints.length });
    this.startActivity(hold);
    if (hold.endpoints.length > 0) void this.forward(hold, c);
    else this.startPolling(hold);
  }

  private giveUp(hold: Hold, c: HeldConnection): void {
    if (!hold.waiting.delete(c)) return;
    this.stats.gaveUp++;
    this.log.warn('gave up on a held connection: no ready replica in time', { service: hold.name, waitedMs: this.holdTimeoutMs, endpoints: hold.endpoints.length });
    c.socket.destroy();
  }

  private sendActivation(hold: Hold): void {
    this.stats.activations++;
    try {
      this.opts.sink.activate(hold.name, hold.waiting.size);
    } catch (err) {
      this.log.warn('failed to ask for a replica', { service: hold.name, reason: messageOf(err) });
    }
  }

  /** Activation now, then every activityMs while connections are held or forwarded. */
  private startActivity(hold: Hold): void {
    if (hold.activity) return;
    this.sendActivation(hold);
    hold.activity = setInterval(() => {
      if (hold.waiting.size === 0 && hold.forwarded.size === 0) {
        clearInterval(hold.activity);
        hold.activity = undefined;
        return;
      }
      this.sendActivation(hold);
    }, this.activityMs);
  }

  private startPolling(hold: Hold): void {
    const lookup = this.opts.lookup;
    if (hold.polling || !lookup) return;
    hold.polling = true;
    void (async () => {
      try {
        while (!this.closed && this.holds.get(hold.name) === hold && [...hold.waiting].some((c) => !c.connecting)) {
          await new Promise((r) => setTimeout(r, this.pollMs));
          try {
            const s = await lookup.getService(hold.name, { signal: this.abort.signal });
            if (s) this.learn(hold, s);
          } catch (err) {
            if (!this.closed) this.log.debug('failed to look up a held service', { service: hold.name, reason: messageOf(err) });
          }
        }
      } finally {
        hold.polling = false;
      }
    })();
  }

  /** Connects a held connection to a ready endpoint (retrying while it refuses) and pipes both ways. */
  private async forward(hold: Hold, c: HeldConnection): Promise<void> {
    if (c.connecting) return;
    c.connecting = true;
    this.log.debug('forwarding a held connection', { service: hold.name, endpoints: hold.endpoints.length });
    let upstream: net.Socket | undefined;
    let lastError = '';
    let attempt = 0;
    while (!this.closed && hold.waiting.has(c) && Date.now() < c.deadline) {
      const eps = hold.endpoints;
      if (eps.length === 0) break;
      const ep = eps[(attempt + Math.floor(Math.random() * eps.length)) % eps.length]!;
      attempt++;
      try {
        upstream = await this.opts.tcp.connect(ep, c.targetPort, { signal: this.abort.signal, timeoutMs: Math.max(1, Math.min(1000, c.deadline - Date.now())), localAddress: this.opts.address });
        break;
      } catch (err) {
        if (attempt <= 3) this.log.info('held connection: replica not accepting yet; retrying', { service: hold.name, endpoint: `${ep}:${c.targetPort}`, attempt, reason: messageOf(err) });
        lastError = messageOf(err);
        const code = (err as { errno?: unknown }).errno;
        if (typeof code === 'string' && code !== '' && !RETRY_CODES.has(code)) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    c.connecting = false;
    if (!upstream) {
      if (hold.waiting.has(c) && hold.endpoints.length === 0 && !this.closed) {
        // The endpoints went away again: keep holding (the deadline still applies).
        this.startPolling(hold);
        return;
      }
      if (hold.waiting.delete(c)) {
        clearTimeout(c.timer);
        this.stats.gaveUp++;
        this.log.warn('failed to forward a held connection', { service: hold.name, targetPort: c.targetPort, reason: lastError || 'no ready endpoint' });
        c.socket.destroy();
      }
      return;
    }
    if (!hold.waiting.delete(c)) {
      upstream.destroy();
      return;
    }
    clearTimeout(c.timer);
    this.pipe(hold, c.socket, upstream);
  }

  private pipe(hold: Hold, client: net.Socket, upstream: net.Socket): void {
    upstream.allowHalfOpen = true;
    upstream.on('error', () => undefined);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      hold.forwarded.delete(client);
    };
    client.once('close', end);
    upstream.once('close', end);
    client.once('error', end);
    upstream.once('error', end);
    hold.forwarded.add(client);
    this.stats.forwarded++;
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    this.log.info('held connection forwarded', { service: hold.name, endpoint: `${upstream.remoteAddress ?? ''}:${upstream.remotePort ?? 0}` });
  }
}

/** A ServiceLookup over ServiceService.Get at `address`; close() releases the channel. */
export function grpcServiceLookup(address: string, timeoutMs = 2000): ServiceLookup & { close(): void } {
  const client = new ServiceServiceClient(address, credentials.createInsecure());
  return {
    getService(name: string, opts: { signal?: AbortSignal }): Promise<Service | undefined> {
      return new Promise((resolve, reject) => {
        const call = client.get({ name }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err: ServiceError | null, res: Service) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (err?.code === GrpcStatus.NOT_FOUND) resolve(undefined);
          else if (err) reject(fromGrpcError(err, `get service "${name}" at ${address}`));
          else resolve(res);
        });
        const onAbort = (): void => call.cancel();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
    close: () => client.close(),
  };
}
