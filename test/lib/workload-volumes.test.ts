import assert from 'node:assert/strict';
import { canonicalWorkloadSpec, validateWorkloadFile, ValidationError, type WorkloadProblem } from '../../lib/index.js';

const REG = '127.0.0.1:5000';

function withVolumes(...lines: string[]): string {
  return ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: db', 'spec:', '  image: busybox', '  volumes:', ...lines.map((l) => `    ${l}`)].join('\n') + '\n';
}

function problemsOf(text: string): WorkloadProblem[] {
  try {
    validateWorkloadFile(text, { defaultRegistry: REG });
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
    return err.problems as WorkloadProblem[];
  }
  assert.fail('expected the file to be refused');
}

describe('lib/workload spec.volumes', () => {
  it('turns named volumes and host paths into mounts when they are valid', () => {
    const [w] = validateWorkloadFile(withVolumes(
      '- name: data',
      '  mountPath: /var/lib/data',
      '- hostPath: /srv/config',
      '  mountPath: /etc/app',
      '  readOnly: true',
    ), { defaultRegistry: REG });
    assert.deepEqual(w?.spec.volumes, {
      mounts: [
        { type: 'volume', source: 'data', destination: '/var/lib/data', readOnly: false },
        { type: 'bind', source: '/srv/config', destination: '/etc/app', readOnly: true },
      ],
    });
  });

  it('leaves spec.volumes unset and the canonical form unchanged when the list is empty', () => {
    const plain = validateWorkloadFile('apiVersion: berth/v1\nkind: Workload\nmetadata: { name: db }\nspec: { image: busybox }\n', { defaultRegistry: REG });
    const empty = validateWorkloadFile(withVolumes('[]').replace('volumes:\n    []', 'volumes: []'), { defaultRegistry: REG });
    assert.equal(empty[0]?.spec.volumes, undefined);
    assert.equal(canonicalWorkloadSpec(empty[0]!.spec), canonicalWorkloadSpec(plain[0]!.spec));
  });

  it('makes a new revision when the volumes change', () => {
    const a = validateWorkloadFile(withVolumes('- { name: data, mountPath: /data }'), { defaultRegistry: REG });
    const b = validateWorkloadFile(withVolumes('- { name: data, mountPath: /data, readOnly: true }'), { defaultRegistry: REG });
    assert.notEqual(canonicalWorkloadSpec(a[0]!.spec), canonicalWorkloadSpec(b[0]!.spec));
  });

  const rejections: Array<{ name: string; lines: string[]; path: string; message: RegExp }> = [
    { name: 'a relative mountPath', lines: ['- { name: data, mountPath: data }'], path: 'spec.volumes[0].mountPath', message: /expected an absolute path inside the container such as "\/data", got "data"/ },
    { name: 'a mountPath with ".."', lines: ['- { name: data, mountPath: /a/../etc }'], path: 'spec.volumes[0].mountPath', message: /without "\." or "\.\." components/ },
    { name: 'a mountPath under /proc', lines: ['- { name: data, mountPath: /proc/sys }'], path: 'spec.volumes[0].mountPath', message: /outside \/proc/ },
    { name: 'the root as mountPath', lines: ['- { name: data, mountPath: / }'], path: 'spec.volumes[0].mountPath', message: /the root filesystem cannot be replaced/ },
    { name: 'a missing mountPath', lines: ['- { name: data }'], path: 'spec.volumes[0].mountPath', message: /required field is missing/ },
    { name: 'a bad volume name', lines: ['- { name: "my data", mountPath: /d }'], path: 'spec.volumes[0].name', message: /expected a volume name of 1 to 64 letters/ },
    { name: 'a relative hostPath', lines: ['- { hostPath: srv, mountPath: /d }'], path: 'spec.volumes[0].hostPath', message: /expected an absolute host path/ },
    { name: 'both name and hostPath', lines: ['- { name: data, hostPath: /srv, mountPath: /d }'], path: 'spec.volumes[0].hostPath', message: /either name .* or hostPath .*, not both/ },
    { name: 'neither name nor hostPath', lines: ['- { mountPath: /d }'], path: 'spec.volumes[0]', message: /expected name, a named volume, or hostPath/ },
    { name: 'a readOnly that is not a boolean', lines: ['- { name: data, mountPath: /d, readOnly: "yes" }'], path: 'spec.volumes[0].readOnly', message: /expected true or false/ },
    { name: 'an unknown field', lines: ['- { name: data, mountPath: /d, readonly: true }'], path: 'spec.volumes[0].readonly', message: /did you mean "readOnly"/ },
    { name: 'a duplicate mountPath', lines: ['- { name: a, mountPath: /data }', '- { name: b, mountPath: /data/ }'], path: 'spec.volumes[1].mountPath', message: /duplicate mountPath "\/data" \(also used by spec\.volumes\[0\]\)/ },
    { name: 'a mapping instead of a list', lines: ['name: data'], path: 'spec.volumes', message: /expected a list of volumes, got a mapping/ },
  ];
  for (const c of rejections) {
    it(`refuses ${c.name} naming ${c.path}`, () => {
      const problems = problemsOf(withVolumes(...c.lines));
      assert.equal(problems.length, 1, problems.map((p) => `${p.path}: ${p.message}`).join('\n'));
      assert.equal(problems[0]?.path, c.path);
      assert.match(problems[0]?.message ?? '', c.message);
      assert.ok((problems[0]?.line ?? 0) > 0, 'points at a line');
    });
  }

  it('reports volume problems together with problems in other fields', () => {
    const text = withVolumes('- { name: data, mountPath: rel }').replace('image: busybox', 'image: busybox\n  replicas: -1');
    const paths = problemsOf(text).map((p) => p.path).sort();
    assert.deepEqual(paths, ['spec.replicas', 'spec.volumes[0].mountPath']);
  });
});
