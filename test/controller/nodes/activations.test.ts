import assert from 'node:assert/strict';
import { NatsActivations } from '../../../controller/nodes/index.js';
import { activateSubject, encodeActivation, parseActivation, type ServiceActivation } from '../../../lib/index.js';
import { deliverOverNats } from './over-nats.js';

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

  it('delivers accepted activations and counts dropped ones over real NATS', async function () {
    this.timeout(30_000);
    const r = await deliverOverNats<ServiceActivation>((servers, deliver) => new NatsActivations({ servers, deliver: (a) => deliver(a, Date.now()) }), [
      [activateSubject('web'), encodeActivation({ service: 'web', node: 'n2', held: 1 })],
      [activateSubject('web'), text({ version: 1, service: 'other', node: 'n2', held: 1 })],
    ], { accepted: 1, dropped: 1 });
    assert.deepEqual(r.got, [{ version: 1, service: 'web', node: 'n2', held: 1 }]);
    assert.equal(r.dropped, 1);
  });
});
