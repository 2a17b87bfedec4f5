import assert from 'node:assert/strict';
import {
  checkCpu,
  checkMemory,
  checkPids,
  formatCpu,
  formatMemory,
  InvalidArgumentError,
  MAX_PIDS,
  parseCpu,
  parseMemory,
  parsePids,
} from '../../lib/index.js';

function problemOf(result: ReturnType<typeof checkCpu>): string {
  assert.equal(result.ok, false, `expected a problem, got ${JSON.stringify(result)}`);
  return result.ok ? '' : result.problem;
}

describe('lib/quantity', () => {
  describe('cpu', () => {
    const good: Array<[string | number, number]> = [
      ['500m', 500],
      ['0m', 0],
      ['1m', 1],
      ['0.5', 500],
      ['0.001', 1],
      ['1.250', 1250],
      ['2', 2000],
      [2, 2000],
      [0.25, 250],
      [0, 0],
      ['100000', 100_000_000],
      ['2.0000', 2000],
    ];
    for (const [input, want] of good) {
      it(`reads ${JSON.stringify(input)} as ${want} millicores when it is valid`, () => {
        assert.deepEqual(checkCpu(input), { ok: true, value: want });
        assert.equal(parseCpu(input), want);
      });
    }

    const bad: Array<[unknown, RegExp]> = [
      ['abc', /^expected a CPU amount in cores or millicores such as 2, "0\.5" or "500m", got "abc"$/],
      ['-1', /\(not negative\), got "-1"$/],
      [-0.5, /\(not negative\), got "-0\.5"$/],
      ['0.0005', /\(at most 3 decimal places: 1 millicore is the smallest unit\), got "0\.0005"$/],
      ['1.5m', /\(millicores are whole numbers\), got "1\.5m"$/],
      ['m', /got "m"$/],
      ['', /got ""$/],
      [' 1', /got " 1"$/],
      ['1e3', /got "1e3"$/],
      [1e21, /got "1e\+21"$/],
      [Number.NaN, /got "NaN"$/],
      [Number.POSITIVE_INFINITY, /got "Infinity"$/],
      ['100001', /\(at most 100000 cores\)/],
      [true, /got the boolean "true"$/],
      [null, /got nothing$/],
      [[1], /got a list$/],
      ['1'.repeat(100), /got a 100-character string$/],
    ];
    for (const [input, want] of bad) {
      it(`rejects ${JSON.stringify(input) ?? String(input)} with what was expected`, () => {
        assert.match(problemOf(checkCpu(input)), want);
      });
    }

    it('names the field when parseCpu is given bad input', () => {
      assert.throws(() => parseCpu('x', '--cpus'), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.field, '--cpus');
        assert.match(err.message, /^--cpus: expected a CPU amount/);
        return true;
      });
    });
  });

  describe('memory', () => {
    const good: Array<[string | number, number]> = [
      ['64Mi', 64 * 1024 * 1024],
      ['1Gi', 1024 ** 3],
      ['1.5Gi', 1.5 * 1024 ** 3],
      ['2Ti', 2 * 1024 ** 4],
      ['4Ki', 4096],
      ['512M', 512_000_000],
      ['128k', 128_000],
      ['1.5k', 1500],
      ['3G', 3e9],
      ['1T', 1e12],
      ['1000000', 1_000_000],
      [1000000, 1_000_000],
      [0, 0],
      ['0', 0],
      ['0.5Ki', 512],
    ];
    for (const [input, want] of good) {
      it(`reads ${JSON.stringify(input)} as ${want} bytes when it is valid`, () => {
        assert.deepEqual(checkMemory(input), { ok: true, value: want });
        assert.equal(parseMemory(input), want);
      });
    }

    const bad: Array<[unknown, RegExp]> = [
      ['12XB', /^expected a size in bytes such as 1048576, "64Mi", "1Gi" or "512M" \(units Ki, Mi, Gi, Ti, k, M, G, T\) \(unknown unit "XB"\), got "12XB"$/],
      ['-1Mi', /\(not negative\), got "-1Mi"$/],
      [-5, /\(not negative\), got "-5"$/],
      ['0.5', /\(the result must be a whole number of bytes\), got "0\.5"$/],
      [1.5, /\(the result must be a whole number of bytes\), got "1\.5"$/],
      ['1.0001k', /whole number of bytes/],
      ['64m', /\("m" is ambiguous: write "Mi" for mebibytes or "M" for megabytes\), got "64m"$/],
      ['64mi', /\(units are case-sensitive: did you mean "Mi"\?\)/],
      ['64MB', /\(write the unit without "B", e.g\. "64Mi" or "64M"\)/],
      ['64MiB', /write the unit without "B"/],
      ['Mi', /got "Mi"$/],
      ['', /got ""$/],
      ['1 Gi', /got "1 Gi"$/],
      ['10000Ti', /\(too large\)/],
      [1e300, /got "1e\+300"$/],
      [false, /got the boolean "false"$/],
    ];
    for (const [input, want] of bad) {
      it(`rejects ${JSON.stringify(input)} with what was expected`, () => {
        assert.match(problemOf(checkMemory(input)), want);
      });
    }

    it('names the field when parseMemory is given bad input', () => {
      assert.throws(() => parseMemory('1XB', '-m'), /^InvalidArgumentError: -m: expected a size in bytes/);
    });
  });

  describe('pids', () => {
    it('reads whole numbers and numeric strings when they are in range', () => {
      assert.deepEqual(checkPids(256), { ok: true, value: 256 });
      assert.deepEqual(checkPids('256'), { ok: true, value: 256 });
      assert.deepEqual(checkPids(0), { ok: true, value: 0 });
      assert.equal(parsePids(MAX_PIDS), MAX_PIDS);
    });

    for (const input of [-1, 1.5, '1.0', 'many', MAX_PIDS + 1, '', '1e3']) {
      it(`rejects ${JSON.stringify(input)} when it is not a whole number in range`, () => {
        assert.equal(problemOf(checkPids(input)), `expected a whole number of processes from 0 to ${MAX_PIDS}, got "${String(input)}"`);
      });
    }

    it('names the field when parsePids is given bad input', () => {
      assert.throws(() => parsePids(-3, '--pids-limit'), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.message, `--pids-limit: expected a whole number of processes from 0 to ${MAX_PIDS}, got "-3"`);
        return true;
      });
    });
  });

  describe('format', () => {
    it('formats cpu as cores when exact and millicores otherwise', () => {
      assert.equal(formatCpu(2000), '2');
      assert.equal(formatCpu(1500), '1.5');
      assert.equal(formatCpu(250), '250m');
      assert.equal(formatCpu(0), '0');
    });

    it('formats memory with the largest exact binary unit', () => {
      assert.equal(formatMemory(64 * 1024 * 1024), '64Mi');
      assert.equal(formatMemory(1536 * 1024), '1536Ki');
      assert.equal(formatMemory(1024 ** 4), '1Ti');
      assert.equal(formatMemory(100), '100');
      assert.equal(formatMemory(0), '0');
    });

    it('round-trips formatted values through the parsers', () => {
      for (const m of [1, 999, 1000, 1500, 2000, 12345]) assert.equal(parseCpu(formatCpu(m)), m);
      for (const b of [0, 1, 1023, 1024, 3 * 1024 ** 3, 5 * 1024 ** 4 + 1024]) assert.equal(parseMemory(formatMemory(b)), b);
    });
  });
});
