/**
 * agent/sys/conntrack: parsing /proc/net/nf_conntrack lines (kernel text
 * taken as untrusted: malformed lines are skipped, never half-read), and the
 * reader in a namespace host's own table.
 */
import assert from 'node:assert/strict';
import { parseConntrack, ProcConntrackReader } from '../../../agent/sys/index.js';
import { makeHosts, type TestHosts } from '../../harness/index.js';

const TCP = 'ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.3.5 dst=10.96.0.7 sport=41234 dport=80 src=10.244.1.2 dst=10.244.3.5 sport=80 dport=41234 [ASSURED] mark=0 zone=0 use=2';
const UDP = 'ipv4     2 udp      17 28 src=10.244.3.5 dst=10.96.0.10 sport=5353 dport=53 [UNREPLIED] src=10.244.2.2 dst=10.244.3.5 sport=53 dport=5353 mark=0 zone=0 use=2';
const ICMP = 'ipv4     2 icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=7 mark=0 zone=0 use=2';

describe('parseConntrack', () => {
  it('reads protocol, TCP state and both tuples when lines are well formed', () => {
    assert.deepEqual(parseConntrack([TCP, UDP, ICMP, ''].join('\n')), [
      { protocol: 'tcp', state: 'ESTABLISHED', original: { src: '10.244.3.5', dst: '10.96.0.7', sport: 41234, dport: 80 }, reply: { src: '10.244.1.2', dst: '10.244.3.5', sport: 80, dport: 41234 } },
      { protocol: 'udp', state: '', original: { src: '10.244.3.5', dst: '10.96.0.10', sport: 5353, dport: 53 }, reply: { src: '10.244.2.2', dst: '10.244.3.5', sport: 53, dport: 5353 } },
      { protocol: 'icmp', state: '', original: { src: '10.0.0.1', dst: '10.0.0.2', sport: 0, dport: 0 }, reply: { src: '10.0.0.2', dst: '10.0.0.1', sport: 0, dport: 0 } },
    ]);
  });

  it('skips IPv6, truncated and malformed lines when they come mixed with good ones', () => {
    const bad = [
      'ipv6     10 tcp      6 300 ESTABLISHED src=::1 dst=::1 sport=1 dport=2 src=::1 dst=::1 sport=2 dport=1',
      'ipv4     2 tcp      6 300 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2',
      'ipv4     2 tcp      6 300 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=99999 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1',
      'ipv4     2 tcp      6 300 ESTABLISHED src=nope dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1',
      'ipv4     2 tcp      6 300 ESTABLISHED src=1.1.1.1 dst=1.1.1.2 sport=1 dport=2 src=1.1.1.2 dst=1.1.1.1 sport=2 dport=1 src=9.9.9.9',
      'ipv4 2',
      'garbage',
    ];
    assert.deepEqual(parseConntrack([...bad, TCP].join('\n')).map((e) => e.reply.src), ['10.244.1.2']);
  });
});

describe('ProcConntrackReader (a namespace host)', function () {
  this.timeout(30_000);
  let hosts: TestHosts | undefined;
  afterEach(async () => {
    await hosts?.cleanup();
    hosts = undefined;
  });

  it('reads the table of the named netns (empty or IPv4 entries) when given nodeNetns', async () => {
    hosts = await makeHosts(1);
    const entries = await new ProcConntrackReader({ nodeNetns: `/run/netns/${hosts.hosts[0]!.netns}` }).entries();
    assert.ok(Array.isArray(entries));
    for (const e of entries) assert.match(e.reply.src, /^\d+\.\d+\.\d+\.\d+$/);
  });

  it('fails naming the command when the netns does not exist', async () => {
    await assert.rejects(new ProcConntrackReader({ nodeNetns: '/run/netns/berth-no-such-netns' }).entries(), /nsenter --net=\/run\/netns\/berth-no-such-netns cat \/proc\/net\/nf_conntrack/);
  });
});
