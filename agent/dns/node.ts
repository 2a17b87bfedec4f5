/**
 * NodeDns: the resolver served on the node bridge's gateway address(es).
 * agent/network calls ensure(gateway) before a "cluster" container starts;
 * the first call binds UDP and TCP port 53 on that address (in the node's
 * network namespace, through the injected `bind`), later calls return at
 * once. A failed bind is not remembered: the next container tries again.
 *
 * Lifecycle: new NodeDns(opts) -> ensure(address)* -> close().
 */
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { Logger } from '../../lib/index.js';
import type { DnsResolver } from './resolver.js';
import { ZONE } from './resolver.js';

export const DNS_PORT = 53;

export interface NodeDnsOptions {
  resolver: DnsResolver;
  /** Binds UDP and TCP on address:port where the containers can reach it. */
  bind: (address: string, port: number) => Promise<{ udp: dgram.Socket; tcp: net.Server }>;
  logger: Logger;
  port?: number;
}

export class NodeDns {
  /** resolv.conf search domains for containers using this resolver. */
  readonly search: string[] = [ZONE];
  private readonly opts: NodeDnsOptions;
  private readonly log: Logger;
  private readonly bound = new Map<string, Promise<void>>();
  private closed = false;

  constructor(opts: NodeDnsOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'dns' });
  }

  get port(): number {
    return this.opts.port ?? DNS_PORT;
  }

  /** Serves on `address` (idempotent). */
  ensure(address: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the node resolver is closed'));
    let p = this.bound.get(address);
    if (!p) {
      p = this.opts.bind(address, this.port).then(({ udp, tcp }) => {
        if (this.closed) {
          udp.close();
          tcp.close();
          throw new Error('the node resolver is closed');
        }
        this.opts.resolver.serve(udp, tcp);
        this.log.info('dns resolver serving', { address, port: this.port });
      });
      const mine = p;
      p.catch(() => {
        if (this.bound.get(address) === mine) this.bound.delete(address);
      });
      this.bound.set(address, p);
    }
    return p;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.bound.values()]);
    await this.opts.resolver.close();
  }
}
