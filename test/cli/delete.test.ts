import assert from 'node:assert/strict';
import { workloadNamesOf } from '../../cli/delete.js';

describe('cli/delete', () => {
  it('reads the names of every document in order, once each, when given a multi-document file', async () => {
    const text = [
      'apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web }\nspec: { image: web }',
      'apiVersion: berth/v1\nkind: Workload\nmetadata:\n  name: db\n',
      '',
      'metadata: { name: web }',
    ].join('\n---\n');
    assert.deepEqual(await workloadNamesOf(text, 'app.yaml'), ['web', 'db']);
  });

  it('names the file and document when a document has no metadata.name', async () => {
    await assert.rejects(workloadNamesOf('metadata: { name: web }\n---\nkind: Workload\n', 'app.yaml'), /app\.yaml: document 2: metadata\.name: expected a workload name/);
  });

  it('names the file and document when a document is not YAML', async () => {
    await assert.rejects(workloadNamesOf('metadata: { name: web }\n---\nmetadata: [unclosed\n', 'bad.yaml'), /bad\.yaml: document 2: not valid YAML/);
  });
});
