/**
 * ServiceDirectory implementations.
 *
 *   StaticDirectory   a fixed map (tests, and nodes without a service source).
 *   PollingDirectory  refreshed from a ServiceSource every `intervalMs`
 *                     (1 s by default, so a new service resolves within 2 s);
 *                     a failed poll keeps the last good list and is logged
 *                     once per outage. Entries with a name that is not a
 *                     DNS label or an address that is not IPv4 are skipped.
 */
import net from 'node:net';
import { messageOf, pause, type Logger } from '../../lib/index.js';
import type { ListServicesResponse } from '../../proto/gen/berth/v1/services.js';
import type { ServiceDirectory } from './resolver.js';

export interface ServiceEntry {
  /** Workload name. */
  name: string;
  /** Its service (virtual) IPv4 address. */
  address: string;
}

/** Lists the cluster's services (e.g. through the controller's ServiceService.List). */
export interface ServiceSource {
  list(opts: { signal?: AbortSignal }): Promise<ServiceEntry[]>;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function toMap(entries: ServiceEntry[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of entries) {
    const name = e.name.toLowerCase();
    if (LABEL.test(name) && net.isIPv4(e.address)) m.set(name, e.address);
  }
  return m;
}

export class StaticDirectory implements ServiceDirectory {
  private map: Map<string, string>;
  constructor(entries: ServiceEntry[] = []) {
    this.map = toMap(entries);
  }
  set(entries: ServiceEntry[]): void {
    this.map = toMap(entries);
  }
  lookup(name: string): string | undefined {
    return this.map.get(name.toLowerCase());
  }
}

export class PollingDirectory implements ServiceDirectory {
  private map = new Map<string, string>();
  private readonly source: ServiceSource;
  private readonly log: Logger;
  private readonly intervalMs: number;

  constructor(opts: { source: ServiceSource; logger: Logger; intervalMs?: number }) {
    this.source = opts.source;
    this.log = opts.logger.child({ component: 'dns-directory' });
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  lookup(name: string): string | undefined {
    return this.map.get(name.toLowerCase());
  }

  /** One refresh; rejects when the source fails (the old list stays). */
  async refresh(opts: { signal?: AbortSignal } = {}): Promise<void> {
    this.map = toMap(await this.source.list(opts));
  }

  /** Refreshes until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    let failing = false;
    while (!signal.aborted) {
      try {
        await this.refresh({ signal });
        if (failing) this.log.info('service list available again', { services: this.map.size });
        failing = false;
      } catch (err) {
        if (signal.aborted) break;
        if (!failing) this.log.warn('failed to list services; keeping the last list', { reason: messageOf(err) });
        failing = true;
      }
      await pause(this.intervalMs, signal);
    }
  }
}

/** The entries of a ServiceService.List answer (services without a virtual IP are left out). */
export function serviceEntries(res: ListServicesResponse): ServiceEntry[] {
  return res.services.filter((s) => s.virtualIp !== '').map((s) => ({ name: s.name, address: s.virtualIp }));
}
