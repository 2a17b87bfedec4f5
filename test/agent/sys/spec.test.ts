/** The helper's spec encoding. */
import assert from 'node:assert/strict';
import { encodeInitSpec, type InitSpec } from '../../../agent/sys/index.js';

const spec: InitSpec = {
  stateDir: '/s', rootfs: '/r', rootfsReadonly: true, hostname: 'h', cwd: '/w', uid: 1, gid: 2, additionalGids: [3],
  args: ['a', 'b c'], env: ['K=V'], noNewPrivileges: true, terminal: false, autostart: true,
  capabilities: { bounding: 0xa80425fbn, effective: 1n, permitted: 1n, inheritable: 0n, ambient: 0n },
  rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1, hard: 2 }],
  mounts: [{ destination: '/proc', type: 'proc', source: 'proc', flags: 14, data: '' }],
  maskedPaths: ['/proc/kcore'], readonlyPaths: ['/proc/sys'], cgroupProcs: ['/cg/cgroup.procs'], oomFile: '/cg/memory.oom_control',
  joinNamespaces: [{ type: 'net', path: '/run/netns/x' }], log: { path: '/s/log', maxBytes: 10, maxFiles: 3 },
};

describe('encodeInitSpec', () => {
  it('writes keyword records as NUL-terminated strings', () => {
    const parts = encodeInitSpec(spec).toString('utf8').split('\0');
    assert.equal(parts.pop(), '');
    assert.deepEqual(parts, [
      'berth-spec-1', 'state', '/s', 'rootfs', '/r', 'rootfs-readonly', 'hostname', 'h', 'cwd', '/w', 'user', '1', '2',
      'group', '3', 'arg', 'a', 'arg', 'b c', 'env', 'K=V', 'no-new-privileges', 'autostart',
      'caps', 'a80425fb', '1', '1', '0', '0', 'rlimit', 'RLIMIT_NOFILE', '1', '2', 'mount', '/proc', 'proc', 'proc', '14', '',
      'mask', '/proc/kcore', 'readonly', '/proc/sys', 'cgroup', '/cg/cgroup.procs', 'oom', '/cg/memory.oom_control',
      'ns', 'net', '/run/netns/x', 'log', '/s/log', '10', '3', 'end',
    ]);
  });

  it('rejects strings with NUL and negative numbers, naming the field', () => {
    assert.throws(() => encodeInitSpec({ ...spec, args: ['a\0b'] }), /args\[0\]: must not contain a NUL character/);
    assert.throws(() => encodeInitSpec({ ...spec, uid: -1 }), /uid: expected a whole number >= 0, got -1/);
  });
});
