import assert from 'node:assert/strict';
import { connect, type NatsConnection } from 'nats';
import { NatsActivations } from '../../../controller/nodes/index.js';
import { activateSubject, encodeActivation, parseActivation, type ServiceActivation } from '../../../lib/index.js';
import { startNats, type Service } from '../../harness/index.js';

const text = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

describe('service activations', () => {
  it('accepts a well-formed message', () => {
    const a = parseActivation(activateSubject('web'), encodeActivation({ service: 'web', node: 'n1', held: 2 }));
    assert.deepEqual(a, { version: 1, service: 'web', node: 'n1', held: 2 });
  });

  const bad: [string, string, Uint8Array, RegExp][] = [
    ['a subject that names no valid service', 'berth.v1.service.Web_1.activate', encodeActivation({ service: 'Web_1', node: 'n1', held: 1 }), /does not name a valid service/],
    ['a subject of another kind', 'berth.v1.service.web.stop', encodeActivation({ service: 'web', node: 'n1', held: 1 }), /does not name a valid service/],
    ['another service in the body', activateSubject('web'), encodeActivation({ service: 'api', node: 'n1', held: 1 }), /names service "api" on the subject of service "web"/],
    ['an unknown version', activateSubject('web'), text({ version: 2, service: 'web', node: 'n1', held: 1 }), /version 2; expected 1/],
    ['a bad node name', activateSubject('web'), text({ version: 1, service: 'web', node: '../x', held: 1 }), /expected node to be a node name/],
    ['a negative count', activateSubject('web'), text({ version: 1, service: 'web', node: 'n1', held: -1 }), /expected held to be a whole number/],
    ['bytes that are not JSON', activateSubject('web'), Uint8Array.from([0xff, 0x00]), /not JSON/],
    ['a JSON array', activateSubject('web'), text([1]), /expected a JSON object/],
    ['an oversized message', activateSubject('web'), new Uint8Array(2000), /2000 bytes; expected at most 1024/],
  ];
  for (const [what, subject, data, reason] of bad) {
    it(`drops ${what}`, () => {
      const r = parseActivation(subject, data);
      assert.equal(typeof r, 'string');
      assert.match(r as string, reason);
    });
  }

  describe('over real NATS', function () {
    this.timeout(30_000);
    let nats: Service | undefined;
    let nc: NatsConnection | undefined;
    let sub: NatsActivations | undefined;
    before(async () => {
      nats = await startNats();
      nc = await connect({ servers: nats.url });
    });
    after(async () => {
      await sub?.stop();
      await nc?.close();
      await nats?.stop();
    });

    it('delivers accepted activations and counts dropped ones', async () => {
      const got: ServiceActivation[] = [];
      sub = new NatsActivations({ servers: [nats!.url], deliver: (a) => got.push(a) });
      await sub.start();
      nc!.publish(activateSubject('web'), encodeActivation({ service: 'web', node: 'n2', held: 1 }));
      nc!.publish(activateSubject('web'), text({ version: 1, service: 'other', node: 'n2', held: 1 }));
      await nc!.flush();
      for (let i = 0; i < 100 && (got.length < 1 || sub.dropped < 1); i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(got, [{ version: 1, service: 'web', node: 'n2', held: 1 }]);
      assert.equal(sub.dropped, 1);
    });
  });
});
