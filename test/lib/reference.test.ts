import assert from 'node:assert/strict';
import {
  formatImageReference,
  InvalidArgumentError,
  normalizeImageReference,
  parseImageReference,
  type ImageReference,
} from '../../lib/index.js';

const D = 'sha256:' + 'a'.repeat(64);

describe('lib/reference', () => {
  describe('parseImageReference', () => {
    const good: Array<[string, ImageReference, string?]> = [
      ['busybox', { registry: 'reg.local:5000', repository: 'busybox' }],
      ['busybox:1.36', { registry: 'reg.local:5000', repository: 'busybox', tag: '1.36' }],
      ['team/web:v2', { registry: 'reg.local:5000', repository: 'team/web', tag: 'v2' }],
      ['127.0.0.1:5000/busybox:latest', { registry: '127.0.0.1:5000', repository: 'busybox', tag: 'latest' }],
      ['localhost/busybox', { registry: 'localhost', repository: 'busybox' }],
      ['localhost:5000/a/b/c', { registry: 'localhost:5000', repository: 'a/b/c' }],
      ['registry.example.com/team/web', { registry: 'registry.example.com', repository: 'team/web' }],
      ['Registry.Example.COM/web', { registry: 'Registry.Example.COM', repository: 'web' }],
      ['[::1]:5000/busybox:1', { registry: '[::1]:5000', repository: 'busybox', tag: '1' }],
      ['[fe80::1]/busybox', { registry: '[fe80::1]', repository: 'busybox' }],
      [`busybox@${D}`, { registry: 'reg.local:5000', repository: 'busybox', digest: D }],
      [`r.io/busybox:1.0@${D}`, { registry: 'r.io', repository: 'busybox', tag: '1.0', digest: D }],
      ['my-app_v2/a.b__c---d:Tag_1.x-y', { registry: 'reg.local:5000', repository: 'my-app_v2/a.b__c---d', tag: 'Tag_1.x-y' }],
      ['localhost:5000', { registry: 'reg.local:5000', repository: 'localhost', tag: '5000' }],
      ['a:' + 'x'.repeat(128), { registry: 'reg.local:5000', repository: 'a', tag: 'x'.repeat(128) }],
      ['x/y:_1', { registry: 'reg.local:5000', repository: 'x/y', tag: '_1' }],
    ];

    for (const [input, want] of good) {
      it(`parses "${input.length > 40 ? input.slice(0, 40) + '...' : input}" when it is valid`, () => {
        assert.deepEqual(parseImageReference(input, { defaultRegistry: 'reg.local:5000' }), want);
      });
    }

    const bad: Array<[string, RegExp]> = [
      ['', /^invalid image reference "": the reference is empty \(expected \[registry\/\]repository/],
      [' busybox', /^invalid image reference " busybox": the reference contains whitespace$/],
      ['busy box', /contains whitespace/],
      ['busybox\n', /contains whitespace/],
      ['busy\u0000box', /contains control characters/],
      ['Busybox', /^invalid image reference "Busybox": repository "Busybox" must be lowercase/],
      ['r.io/Team/web', /repository "Team\/web" must be lowercase/],
      ['r.io/a..b', /repository component "a\.\.b" is not valid \(expected runs of \[a-z0-9\]/],
      ['r.io/a___b', /repository component "a___b" is not valid/],
      ['r.io/-ab', /repository component "-ab" is not valid/],
      ['r.io/ab-', /repository component "ab-" is not valid/],
      ['r.io/a//b', /repository "a\/\/b" has an empty path component/],
      ['r.io/', /the repository name after the registry host is empty/],
      ['r.io/web/', /has an empty path component/],
      ['busybox:', /the tag after ":" is empty/],
      ['busybox:-x', /tag "-x" is not valid \(expected letters, digits, "_", "\." and "-", not starting with "\." or "-"\)/],
      ['busybox:.x', /tag "\.x" is not valid/],
      ['busybox:a+b', /tag "a\+b" is not valid/],
      ['a:' + 'x'.repeat(129), /tag is 129 characters long \(expected at most 128\)/],
      ['busybox@', /the digest after "@" is empty \(expected sha256:<64 lowercase hex characters>\)/],
      ['busybox@abc', /digest "abc" has no algorithm/],
      ['busybox@sha512:' + 'a'.repeat(128), /digest algorithm "sha512" is not supported \(expected sha256\)/],
      ['busybox@SHA256:' + 'a'.repeat(64), /has an invalid algorithm/],
      ['busybox@sha256:' + 'A'.repeat(64), /is not valid \(expected sha256: followed by exactly 64 lowercase hex characters, got 64 characters\)/],
      ['busybox@sha256:' + 'a'.repeat(63), /got 63 characters/],
      ['busybox@sha256:' + 'a'.repeat(64) + '@x', /is not valid/],
      ['http://r.io/busybox', /a URL scheme is not allowed/],
      ['r..io/busybox', /registry host "r\.\.io" is not a valid host name/],
      ['-r.io/busybox', /registry host "-r\.io" is not a valid host name/],
      ['r_x.io/busybox', /registry host "r_x\.io" is not a valid host name/],
      ['r.io:0/busybox', /registry port "0" is not valid \(expected a number from 1 to 65535\)/],
      ['r.io:65536/busybox', /registry port "65536" is not valid/],
      ['r.io:abc/busybox', /registry port "abc" is not valid/],
      [':5000/busybox', /registry ":5000" has no host name before the port/],
      ['[::1/busybox', /has an unclosed "\["/],
      ['[]/busybox', /is not a valid bracketed IPv6 address/],
      ['[::1]x/busybox', /unexpected text after "\]"/],
      ['a:b:c', /"a:b" looks like a registry host but no repository follows it/],
      [':latest', /the repository name is empty/],
      ['@' + D, /the repository name is empty/],
      ['r.io/' + 'a'.repeat(251), /registry and repository together are 256 characters long \(expected at most 255\)/],
      ['x'.repeat(1000), /the reference is 1000 characters long \(expected at most 456\)/],
    ];
    for (const [input, want] of bad) {
      it(`rejects ${JSON.stringify(input.length > 40 ? input.slice(0, 40) + '...' : input)} with a message saying what was expected`, () => {
        assert.throws(
          () => parseImageReference(input, { defaultRegistry: 'reg.local:5000' }),
          (err: unknown) => {
            assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
            assert.match(err.message, want);
            assert.equal(err.field, 'image');
            return true;
          },
        );
      });
    }

    it('quotes long input shortened in the message when the reference is too long', () => {
      assert.throws(() => parseImageReference('x'.repeat(1000), { defaultRegistry: 'r.io' }), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.ok(err.message.length < 250, err.message);
        assert.match(err.message, /^invalid image reference "x{77}\.\.\."/);
        return true;
      });
    });

    it('rejects a reference without a host when no default registry is configured', () => {
      assert.throws(() => parseImageReference('busybox'), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.message, 'image "busybox" names no registry host and no default registry is configured');
        return true;
      });
      assert.throws(() => parseImageReference('team/web:1', { defaultRegistry: '' }), /image "team\/web:1" names no registry host/);
    });

    it('does not need a default registry when the reference names a host', () => {
      assert.deepEqual(parseImageReference('r.io/busybox'), { registry: 'r.io', repository: 'busybox' });
    });

    it('rejects an invalid default registry when it is used', () => {
      assert.throws(() => parseImageReference('busybox', { defaultRegistry: 'http://x' }), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.field, 'defaultRegistry');
        assert.match(err.message, /^invalid default registry "http:\/\/x": registry port/);
        return true;
      });
    });

    it('names the caller field in errors when a field is given', () => {
      assert.throws(() => parseImageReference('Bad', { defaultRegistry: 'r.io', field: 'spec.image' }), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError);
        assert.equal(err.field, 'spec.image');
        return true;
      });
    });

    it('rejects a non-string when called from untyped code', () => {
      assert.throws(() => parseImageReference(42 as unknown as string), /expected a string, got number/);
    });
  });

  describe('formatImageReference', () => {
    it('formats tag, digest and both when they are set', () => {
      assert.equal(formatImageReference({ registry: 'r.io', repository: 'a/b', tag: '1' }), 'r.io/a/b:1');
      assert.equal(formatImageReference({ registry: 'r.io', repository: 'a', digest: D }), `r.io/a@${D}`);
      assert.equal(formatImageReference({ registry: 'r.io:5000', repository: 'a', tag: 't', digest: D }), `r.io:5000/a:t@${D}`);
      assert.equal(formatImageReference({ registry: 'r.io', repository: 'a' }), 'r.io/a');
    });

    it('round-trips through parse when the reference is fully qualified', () => {
      for (const s of ['r.io/a:1', `localhost:5000/x/y@${D}`, `[::1]:5000/b:c@${D}`]) {
        assert.equal(formatImageReference(parseImageReference(s)), s);
      }
    });
  });

  describe('normalizeImageReference', () => {
    it('adds the default registry and tag "latest" when both are missing', () => {
      assert.equal(normalizeImageReference('busybox', { defaultRegistry: '127.0.0.1:5000' }), '127.0.0.1:5000/busybox:latest');
    });

    it('keeps a digest without adding a tag when only a digest is given', () => {
      assert.equal(normalizeImageReference(`r.io/web@${D}`), `r.io/web@${D}`);
    });

    it('keeps an explicit tag when one is given', () => {
      assert.equal(normalizeImageReference('web:1.2', { defaultRegistry: 'r.io' }), 'r.io/web:1.2');
    });

    it('is idempotent when applied to its own output', () => {
      const once = normalizeImageReference('team/web', { defaultRegistry: 'r.io' });
      assert.equal(normalizeImageReference(once), once);
    });
  });
});
