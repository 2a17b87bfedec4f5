/**
 * One ParsedSubscription (controller/nodes/connect.ts) against a real NATS
 * server: starts the server and the subscription, publishes `messages` in
 * order from another connection, waits until `accepted` were delivered and
 * `dropped` were dropped, then stops everything (also on failure). Returns
 * what was delivered, with this controller's receipt times.
 */
import { connect } from 'nats';
import type { ParsedSubscription } from '../../../controller/nodes/index.js';
import { startNats, waitFor } from '../../harness/index.js';

export async function deliverOverNats<T>(
  make: (servers: string[], deliver: (m: T, receivedMs: number) => void) => ParsedSubscription<T>,
  messages: readonly (readonly [string, Uint8Array])[],
  expect: { accepted: number; dropped: number },
): Promise<{ got: T[]; receivedMs: number[]; dropped: number }> {
  const nats = await startNats();
  const got: T[] = [];
  const receivedMs: number[] = [];
  let sub: ParsedSubscription<T> | undefined;
  const pub = await connect({ servers: nats.url }).catch(async (err: unknown) => {
    await nats.stop();
    throw err;
  });
  try {
    sub = make([nats.url], (m, at) => {
      got.push(m);
      receivedMs.push(at);
    });
    await sub.start();
    for (const [subject, data] of messages) pub.publish(subject, data);
    await pub.flush();
    const s = sub;
    await waitFor(`${expect.accepted} accepted and ${expect.dropped} dropped messages`, () => got.length >= expect.accepted && s.dropped >= expect.dropped, 10_000, 20);
    return { got, receivedMs, dropped: s.dropped };
  } finally {
    await pub.close();
    await sub?.stop();
    await nats.stop();
  }
}
