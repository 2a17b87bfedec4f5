/**
 * Leader election on etcd with a lease (see docs/internals.md).
 *
 * A controller grants a lease of LEASE_TTL_SECONDS, keeps it alive every
 * TTL/3 seconds, and campaigns with one transaction: "if the leader key does not
 * exist, put my id there attached to my lease". The winner is leader until its
 * lease ends; everyone else reads the key every POLL_MS to learn the leader and
 * to notice when it is gone (a killed leader's key disappears when its lease
 * expires, at most TTL seconds after its last keepalive).
 *
 * A leader steps down at once, without asking etcd, when it has not had a
 * keepalive answered for STEP_DOWN_AFTER_MS (less than the TTL), so two leaders
 * never act at the same time even when this one is cut off from etcd.
 */
import type { Lease } from 'etcd3';
import { messageOf, pause, silentLogger, type Logger } from '../../lib/index.js';
import type { EtcdStore } from './etcd.js';
import type { LeaderElection, LeadershipTerm } from './types.js';

/** etcd refuses TTLs under its minimum (about 2 s with default tuning); 3 s keeps failover under 5 s. */
export const LEASE_TTL_SECONDS = 3;
export const STEP_DOWN_AFTER_MS = LEASE_TTL_SECONDS * 1000 - 500;
export const POLL_MS = 250;

export interface EtcdElectionOptions {
  controllerId: string;
  logger?: Logger;
  ttlSeconds?: number;
}

export class EtcdElection implements LeaderElection {
  readonly controllerId: string;
  private readonly logger: Logger;
  private readonly ttl: number;
  private readonly stopper = new AbortController();
  private term: (LeadershipTerm & { end(reason: string): void }) | undefined;
  private knownLeader: string | undefined;
  private readonly listeners = new Set<(t: LeadershipTerm) => void>();
  private loop: Promise<void> | undefined;
  private lastError: string | undefined;

  constructor(private readonly store: EtcdStore, opts: EtcdElectionOptions) {
    this.controllerId = opts.controllerId;
    this.ttl = opts.ttlSeconds ?? LEASE_TTL_SECONDS;
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'election', controllerId: opts.controllerId });
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run().catch((err: unknown) => {
      this.logger.error('election loop failed', { error: messageOf(err) });
    });
  }

  isLeader(): boolean {
    return this.term !== undefined;
  }

  leaderId(): string | undefined {
    return this.term ? this.controllerId : this.knownLeader;
  }

  currentTerm(): LeadershipTerm | undefined {
    return this.term;
  }

  onTerm(fn: (term: LeadershipTerm) => void): () => void {
    this.listeners.add(fn);
    if (this.term) fn(this.term);
    return () => this.listeners.delete(fn);
  }

  private async run(): Promise<void> {
    const stop = this.stopper.signal;
    const key = Buffer.from(this.store.keys.leader());
    while (!stop.aborted) {
      let lease: Lease | undefined;
      try {
        lease = this.store.client.lease(this.ttl);
        let lastOk = Date.now();
        let lost = false;
        lease.on('keepaliveSucceeded', () => {
          lastOk = Date.now();
        });
        lease.on('lost', (err: unknown) => {
          lost = true;
          this.logger.debug('election lease lost', { error: messageOf(err) });
        });
        const leaseId = await this.store.call('grant the election lease', { signal: stop }, () => lease!.grant());
        lastOk = Date.now();
        // Campaign until we win, the lease dies or we stop.
        while (!stop.aborted && !lost && Date.now() - lastOk < STEP_DOWN_AFTER_MS) {
          const res = await this.store.call('campaign for leadership', { signal: stop }, () =>
            this.store.client.kv.txn({
              compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
              success: [{ request_put: { key, value: Buffer.from(this.controllerId), lease: leaseId } }],
              failure: [{ request_range: { key } }],
            }),
          );
          this.lastError = undefined;
          if (res.succeeded) {
            await this.lead(() => lost || Date.now() - lastOk >= STEP_DOWN_AFTER_MS);
            break;
          }
          const kv = res.responses[0]?.response_range?.kvs[0];
          const holder = kv?.value.toString();
          if (holder !== this.knownLeader) {
            this.logger.info('leader observed', { leaderId: holder ?? null });
            this.knownLeader = holder;
          }
          await pause(POLL_MS, stop);
        }
      } catch (err) {
        // Log the first failure of a streak at warn and repeats at debug, so an etcd outage is one line, not four a second.
        const message = messageOf(err);
        if (!stop.aborted) {
          if (message !== this.lastError) this.logger.warn('election attempt failed; retrying', { error: message });
          else this.logger.debug('election attempt failed; retrying', { error: message });
        }
        this.lastError = message;
        this.knownLeader = undefined;
        await pause(POLL_MS * 2, stop);
      } finally {
        this.endTerm('lease ended');
        if (lease) {
          // Revoking frees the leader key at once, so the next controller takes over without waiting for the TTL.
          await this.store.call('revoke the election lease', {}, () => lease!.revoke()).catch(() => lease!.release());
        }
      }
    }
  }

  /** Holds leadership until `lostIt` says the lease may be gone or we stop. */
  private async lead(lostIt: () => boolean): Promise<void> {
    const ctrl = new AbortController();
    const term = {
      controllerId: this.controllerId,
      startedUnixMs: Date.now(),
      signal: ctrl.signal,
      end: (reason: string) => {
        if (!ctrl.signal.aborted) {
          this.logger.info('leadership ended', { reason });
          ctrl.abort(new Error(reason));
        }
      },
    };
    this.term = term;
    this.knownLeader = this.controllerId;
    this.logger.info('became leader', { leaderId: this.controllerId });
    for (const fn of this.listeners) {
      try {
        fn(term);
      } catch (err) {
        this.logger.error('leadership listener failed', { error: messageOf(err) });
      }
    }
    const stop = this.stopper.signal;
    const key = Buffer.from(this.store.keys.leader());
    let nextCheck = Date.now() + POLL_MS * 2;
    let checking = false;
    let taken: string | undefined;
    let reason = 'lease not renewed in time';
    while (!stop.aborted && !lostIt() && taken === undefined) {
      await pause(100, stop);
      if (checking || Date.now() < nextCheck || stop.aborted) continue;
      nextCheck = Date.now() + POLL_MS * 2;
      checking = true;
      // The key is ours while our lease lives; if someone removed or replaced it, another
      // controller may win, so stop acting. Checked in the background so a slow etcd never
      // delays the keepalive rule above.
      this.store
        .call('check the leader key', { signal: stop }, () => this.store.client.kv.range({ key }))
        .then((r) => {
          const holder = r.kvs[0]?.value.toString() ?? '';
          if (holder !== this.controllerId) taken = holder === '' ? 'leader key removed' : `leader key taken by "${holder}"`;
        }, () => undefined)
        .finally(() => {
          checking = false;
        });
    }
    if (taken !== undefined) reason = taken;
    this.endTerm(stop.aborted ? 'resigned' : reason);
  }

  private endTerm(reason: string): void {
    const t = this.term;
    if (!t) return;
    this.term = undefined;
    if (this.knownLeader === this.controllerId) this.knownLeader = undefined;
    t.end(reason);
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    this.endTerm('resigned');
    await this.loop;
  }
}
