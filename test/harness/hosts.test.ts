import assert from 'node:assert/strict';
import { chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './exec.js';
import { GUARD_TABLE, guardInstalled, madeRunIds, makeHosts, makeTempDir, runIn, tryRunIn, type TestHosts } from './index.js';

async function netnsNames(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);
}

async function linkNames(): Promise<string[]> {
  const { stdout } = await run('ip', ['-j', 'link', 'show']);
  return (JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname);
}

async function guardChains(): Promise<string> {
  const { stdout } = await run('nft', ['list', 'tables']);
  if (!stdout.includes(GUARD_TABLE)) return '';
  return (await run('nft', ['list', 'table', 'inet', GUARD_TABLE])).stdout;
}

describe('test harness hosts', function () {
  this.timeout(60_000);
  let hosts: TestHosts | undefined;

  afterEach(async () => {
    await hosts?.cleanup();
    hosts = undefined;
  });

  it('lets two hosts ping each other and the bridge when they share the bridge', async () => {
    hosts = await makeHosts(2);
    const [a, b] = hosts.hosts;
    assert.ok(a && b);
    assert.notEqual(a.address, b.address);
    // Only addresses inside namespaces this test made.
    await runIn(a.netns, 'busybox', ['ping', '-c1', '-W1', b.address]);
    await runIn(b.netns, 'busybox', ['ping', '-c1', '-W1', a.address]);
    await runIn(a.netns, 'busybox', ['ping', '-c1', '-W1', hosts.hostAddress]);
    const lo = await runIn(a.netns, 'busybox', ['ping', '-c1', '-W1', '127.0.0.1']);
    assert.match(lo.stdout, /1 packets received/);
  });

  it('gives a namespace no default route and no route off the test subnet', async () => {
    hosts = await makeHosts(1);
    const h = hosts.hosts[0];
    assert.ok(h);
    const { stdout } = await runIn(h.netns, 'ip', ['-4', 'route', 'show']);
    assert.doesNotMatch(stdout, /default/);
    assert.equal(stdout.trim(), `${hosts.subnet} dev eth0 proto kernel scope link src ${h.address}`);
    // An address outside the subnet is unreachable: the kernel refuses at once, nothing is sent.
    const res = await tryRunIn(h.netns, 'ip', ['-4', 'route', 'get', '203.0.113.77']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /unreachable/i);
  });

  it('keeps the egress guard installed while hosts exist and drops the subnet on other interfaces', async () => {
    hosts = await makeHosts(2, { guardRanges: ['10.244.0.0/16'] });
    assert.equal(await guardInstalled(hosts.runId, 4), true);
    const table = await guardChains();
    assert.match(table, new RegExp(`chain f_${hosts.runId} \\{[^}]*hook forward`));
    assert.match(table, new RegExp(`chain p_${hosts.runId} \\{[^}]*hook postrouting`));
    assert.match(table, new RegExp(`ip daddr ${hosts.subnet.replace(/\./g, '\\.')} oifname != "bt\\*" counter packets \\d+ bytes \\d+ drop`));
    assert.match(table, new RegExp(`ip saddr 10\\.244\\.0\\.0/16 oifname != "bt\\*"`));
  });

  it('removes namespaces, links, guard chains and the subnet claim when cleaned up, twice', async () => {
    const made = await makeHosts(3);
    hosts = made;
    const names = made.hosts.map((h) => h.netns);
    assert.deepEqual((await netnsNames()).filter((n) => names.includes(n)).sort(), [...names].sort());
    assert.ok((await linkNames()).includes(made.bridge));
    await made.cleanup();
    await made.cleanup();
    hosts = undefined;
    assert.deepEqual((await netnsNames()).filter((n) => n.includes(made.runId)), []);
    assert.deepEqual((await linkNames()).filter((n) => n.startsWith(made.bridge)), []);
    assert.doesNotMatch(await guardChains(), new RegExp(made.runId));
    assert.equal(await guardInstalled(made.runId), false);
    assert.equal(existsSync(`/run/netns/${names[0]}`), false);
  });

  it('rejects a bad host count or guard range before creating anything', async () => {
    await assert.rejects(makeHosts(0), /n: expected a whole number from 1 to 200, got 0/);
    await assert.rejects(makeHosts(1, { guardRanges: ['10.244.0.0'] }), /guardRanges\[0\]: expected an IPv4 CIDR/);
  });

  describe('when the guard cannot be installed', () => {
    let dir: string | undefined;
    const path = process.env.PATH;
    afterEach(() => {
      process.env.PATH = path;
      if (dir) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    });

    // A stand-in `nft` first on PATH; `realNft` is the real binary for what the script passes on.
    async function withNft(script: (realNft: string) => string): Promise<{ err: unknown; runId: string | undefined }> {
      const realNft = (await run('sh', ['-c', 'command -v nft'])).stdout.trim();
      dir = makeTempDir('fake-nft');
      writeFileSync(join(dir, 'nft'), script(realNft));
      chmodSync(join(dir, 'nft'), 0o755);
      const before = new Set(madeRunIds());
      process.env.PATH = `${dir}:${path ?? ''}`;
      let err: unknown;
      try {
        hosts = await makeHosts(2);
      } catch (e) {
        err = e;
      } finally {
        process.env.PATH = path;
      }
      return { err, runId: [...madeRunIds()].find((id) => !before.has(id)) };
    }

    async function assertNothingMade(runId: string | undefined): Promise<void> {
      assert.ok(runId);
      assert.deepEqual((await netnsNames()).filter((n) => n.includes(runId)), []);
      assert.deepEqual((await linkNames()).filter((n) => n.includes(runId)), []);
    }

    it('fails setup and makes no namespace or address when nft rejects the rules', async () => {
      const { err, runId } = await withNft(() => '#!/bin/sh\necho "Error: simulated failure" >&2\nexit 1\n');
      assert.match(String(err), /failed to make 2 test hosts: failed to install the egress guard .*simulated failure/);
      await assertNothingMade(runId);
    });

    it('fails setup when nft reports success but the guard chains are not there', async () => {
      const { err, runId } = await withNft((real) => `#!/bin/sh\nif [ "$1" = "-f" ]; then cat >/dev/null; exit 0; fi\nexec ${real} "$@"\n`);
      assert.match(String(err), /failed to install the egress guard: chains f_\w+\/p_\w+ .* missing or incomplete/);
      await assertNothingMade(runId);
    });
  });
});
