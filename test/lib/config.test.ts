import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, parsers, resolveConfig, type Setting } from '../../lib/index.js';
import { makeTempDir } from '../harness/index.js';

const settings = {
  listen: { flag: 'listen', env: 'T_LISTEN', parse: parsers.hostPort, default: '127.0.0.1:7070' } as Setting<string>,
  etcd: { flag: 'etcd', env: 'T_ETCD', parse: parsers.urlList, default: ['http://127.0.0.1:2379'] } as Setting<string[]>,
  logLevel: { flag: 'log-level', env: 'T_LOG', key: 'log-level', parse: parsers.string, default: 'info' } as Setting<string>,
};

describe('lib/config', () => {
  let dir = '';
  beforeEach(() => {
    dir = makeTempDir('config');
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function file(text: string): string {
    const p = join(dir, 'berth.yaml');
    writeFileSync(p, text);
    return p;
  }

  it('takes flags over environment over file over defaults when several sources set a value', () => {
    const f = file('listen: 127.0.0.1:1111\netcd: http://127.0.0.1:1\nlog-level: warn\n');
    const env = { T_LISTEN: '127.0.0.1:2222', T_ETCD: 'http://127.0.0.1:2' };
    const cfg = resolveConfig(settings, { flags: { listen: '127.0.0.1:3333' }, env, file: f });
    assert.equal(cfg.listen, '127.0.0.1:3333');
    assert.deepEqual(cfg.etcd, ['http://127.0.0.1:2']);
    assert.equal(cfg.logLevel, 'warn');
    const defaults = resolveConfig(settings, { flags: {}, env: {} });
    assert.equal(defaults.listen, '127.0.0.1:7070');
    assert.equal(defaults.logLevel, 'info');
  });

  it('names the source and the expected form when a value does not parse', () => {
    assert.throws(() => resolveConfig(settings, { flags: { listen: 'nope' }, env: {} }),
      (e: unknown) => e instanceof InvalidArgumentError && /^--listen: expected HOST:PORT such as 127\.0\.0\.1:7070, got "nope"$/.test(e.message));
    assert.throws(() => resolveConfig(settings, { flags: {}, env: { T_ETCD: 'not a url' } }), /: T_ETCD: expected a URL such as http:\/\/127\.0\.0\.1:2379, got "not a url"$/);
    const f = file('listen: "x:99999"\n');
    assert.throws(() => resolveConfig(settings, { flags: {}, env: {}, file: f }), /berth\.yaml: listen: expected HOST:PORT/);
  });

  it('rejects a config file with an unknown setting and suggests the known ones', () => {
    const f = file('listn: 127.0.0.1:1\n');
    assert.throws(() => resolveConfig(settings, { flags: {}, env: {}, file: f }), /unknown setting "listn"; expected one of etcd, listen, log-level/);
  });

  it('rejects a config file that is missing, not YAML, or not a mapping', () => {
    assert.throws(() => resolveConfig(settings, { flags: {}, env: {}, file: join(dir, 'missing.yaml') }), /failed to read config file/);
    assert.throws(() => resolveConfig(settings, { flags: {}, env: {}, file: file('a: [1\n') }), /failed to parse config file/);
    assert.throws(() => resolveConfig(settings, { flags: {}, env: {}, file: file('- 1\n- 2\n') }), /expected a mapping/);
  });
});
