/**
 * Connection draining on the controller's side: the workload's drainSeconds
 * reaches the replicas' container spec only when set (an unset value is the
 * agent's default), so specs without it keep their template and a change of
 * it alone is a new template (replicas are replaced with the new delay).
 */
import assert from 'node:assert/strict';
import { validateWorkloadFile } from '../../../lib/index.js';
import { containerSpecFor, templateKey } from '../../../controller/reconcile/index.js';

function spec(...specLines: string[]) {
  const text = ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  image: busybox', ...specLines.map((l) => `  ${l}`)].join('\n') + '\n';
  const [w] = validateWorkloadFile(text, { defaultRegistry: '127.0.0.1:5000' });
  assert.ok(w);
  return w.spec;
}

describe('containerSpecFor drainSeconds', () => {
  it('leaves drain_seconds unset when the workload does not set it, and copies it when set', () => {
    const implicit = containerSpecFor('web', spec('ports: [{ container: 80 }]'));
    assert.equal(implicit.drainSeconds, undefined);
    assert.equal(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 9')).drainSeconds, 9);
    assert.equal(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 0')).drainSeconds, 0);
  });

  it('keeps the template of a spec without it and makes a new template when it changes', () => {
    const implicit = templateKey(containerSpecFor('web', spec('ports: [{ container: 80 }]')));
    assert.equal(templateKey(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 3'))), implicit);
    assert.notEqual(templateKey(containerSpecFor('web', spec('ports: [{ container: 80 }]', 'drainSeconds: 5'))), implicit);
  });
});
