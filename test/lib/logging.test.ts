import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createLogger, parseLogLevel } from '../../lib/index.js';

function capture(): { stream: PassThrough; lines: () => string[] } {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString('utf8')));
  return { stream, lines: () => chunks.join('').split('\n').filter(Boolean) };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('lib/logging', () => {
  it('writes one JSON object per line with fixed message text and fields when output is not a terminal', async () => {
    const out = capture();
    const logger = createLogger({ level: 'info', stream: out.stream, defaultMeta: { program: 'test' } });
    logger.child({ component: 'store' }).info('workload applied', { workload: 'web', revision: 2 });
    logger.debug('hidden at info');
    await tick();
    const lines = out.lines();
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    assert.equal(rec['message'], 'workload applied');
    assert.equal(rec['level'], 'info');
    assert.equal(rec['component'], 'store');
    assert.equal(rec['workload'], 'web');
    assert.equal(rec['program'], 'test');
    assert.ok(typeof rec['timestamp'] === 'string');
  });

  it('writes readable key=value lines when asked for pretty output', async () => {
    const out = capture();
    createLogger({ level: 'debug', stream: out.stream, pretty: true }).debug('node ready', { nodeId: 'n1' });
    await tick();
    assert.match(out.lines()[0] ?? '', /^\d\d:\d\d:\d\d\.\d{3} debug node ready nodeId=n1$/);
  });

  it('takes the level from BERTH_LOG_LEVEL when no level is given, and rejects unknown levels', async () => {
    const saved = process.env['BERTH_LOG_LEVEL'];
    try {
      process.env['BERTH_LOG_LEVEL'] = 'warn';
      const out = capture();
      const logger = createLogger({ stream: out.stream });
      logger.info('dropped');
      logger.warn('kept');
      await tick();
      assert.deepEqual(out.lines().map((l) => (JSON.parse(l) as { message: string }).message), ['kept']);
      process.env['BERTH_LOG_LEVEL'] = 'loud';
      assert.throws(() => createLogger({ stream: capture().stream }), /^Error: BERTH_LOG_LEVEL: expected one of error, warn, info, debug, got "loud"$|BERTH_LOG_LEVEL: expected one of error, warn, info, debug, got "loud"/);
    } finally {
      if (saved === undefined) delete process.env['BERTH_LOG_LEVEL'];
      else process.env['BERTH_LOG_LEVEL'] = saved;
    }
    assert.equal(parseLogLevel(' DEBUG '), 'debug');
    assert.throws(() => parseLogLevel('trace'), /--log-level: expected one of error, warn, info, debug, got "trace"/);
  });
});
