/**
 * Checks of AgentStreamService input from the wire (agent/api/streams.ts):
 * exec starts and terminal sizes are validated with messages naming the field.
 * The streams themselves run end to end in test/cli/interactive.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { checkExecStart, checkTerminalSize } from '../../../agent/api/index.js';
import type { ExecStart } from '../../../proto/gen/berth/v1/streams.js';

const start = (o: Partial<ExecStart>): ExecStart => ({ container: 'c', command: ['true'], env: [], workingDir: '', user: '', tty: false, stdin: false, ...o });

describe('agent/api/streams', () => {
  it('accepts a valid exec start and keeps only what was given', () => {
    assert.deepEqual(checkExecStart(start({ command: ['sh', '-c', 'x'], env: ['A=1'], workingDir: '/tmp', user: '1:2', tty: true, size: { rows: 24, cols: 80 } })), {
      args: ['sh', '-c', 'x'], env: ['A=1'], cwd: '/tmp', user: '1:2', tty: true, stdin: false, size: { rows: 24, cols: 80 },
    });
    assert.deepEqual(checkExecStart(start({})), { args: ['true'], env: [], tty: false, stdin: false });
  });

  it('refuses a bad exec start naming the field', () => {
    assert.throws(() => checkExecStart(start({ command: [] })), /exec\.command: expected a program to run/);
    assert.throws(() => checkExecStart(start({ command: [''] })), /exec\.command: expected a program to run/);
    assert.throws(() => checkExecStart(start({ command: ['a\0b'] })), /exec\.command\[0\]: expected at most 4096 characters without NUL/);
    assert.throws(() => checkExecStart(start({ command: Array.from({ length: 257 }, () => 'x') })), /exec\.command: expected at most 256 arguments, got 257/);
    assert.throws(() => checkExecStart(start({ env: ['NOEQUALS'] })), /exec\.env\[0\]: expected KEY=value/);
    assert.throws(() => checkExecStart(start({ workingDir: 'relative' })), /exec\.working_dir: expected an absolute path/);
    assert.throws(() => checkExecStart(start({ user: 'u'.repeat(300) })), /exec\.user: expected a user name or uid\[:gid\] of at most 256 characters/);
    assert.throws(() => checkExecStart(start({ size: { rows: 0, cols: 80 } })), /exec\.size\.rows: expected 1\.\.65535, got 0/);
  });

  it('treats a missing or zero terminal size as unset and refuses sizes out of range', () => {
    assert.equal(checkTerminalSize(undefined, 'size'), undefined);
    assert.equal(checkTerminalSize({ rows: 0, cols: 0 }, 'size'), undefined);
    assert.deepEqual(checkTerminalSize({ rows: 1, cols: 65535 }, 'size'), { rows: 1, cols: 65535 });
    assert.throws(() => checkTerminalSize({ rows: 70000, cols: 80 }, 'resize'), /resize\.rows: expected 1\.\.65535, got 70000/);
  });
});
