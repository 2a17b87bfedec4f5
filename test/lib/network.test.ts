import assert from 'node:assert/strict';
import { InvalidArgumentError, nodeSubnet, nodeSubnetCount, nodeSubnetIndex, formatCidr, parseCidr, parseClusterCidr, parseIpv4, parseNetworkMode, parsePublish } from '../../lib/index.js';

describe('lib/network', () => {
  it('parses -p values with optional host address and protocol', () => {
    assert.deepEqual(parsePublish('8080:80'), { hostIp: '', hostPort: 8080, containerPort: 80, protocol: 'tcp' });
    assert.deepEqual(parsePublish('10.0.0.2:5353:53/udp'), { hostIp: '10.0.0.2', hostPort: 5353, containerPort: 53, protocol: 'udp' });
  });

  it('names the flag and what was expected when a -p value is bad', () => {
    const bad: [string, RegExp][] = [
      ['80', /expected \[HOSTIP:\]HOSTPORT:CONTAINERPORT\[\/tcp\|udp\], got "80"/],
      ['0:80', /the host port must be a whole number from 1 to 65535, got "0"/],
      ['8080:65536', /the container port must be a whole number from 1 to 65535, got "65536"/],
      ['8080:80/sctp', /protocol must be "tcp" or "udp", got "sctp"/],
      ['300.1.1.1:80:80', /expected an IPv4 address of the node, got "300\.1\.1\.1"/],
      ['127.0.0.1:80:80', /loopback addresses cannot be published to/],
      ['a:b:c:d', /expected \[HOSTIP:\]HOSTPORT/],
    ];
    for (const [v, re] of bad) assert.throws(() => parsePublish(v, '-p'), (err: unknown) => err instanceof InvalidArgumentError && err.message.startsWith('-p: ') && re.test(err.message), v);
  });

  it('parses addresses and ranges strictly', () => {
    assert.equal(parseIpv4('10.244.1.2'), (10 * 256 ** 3) + (244 * 256 ** 2) + 256 + 2);
    assert.equal(parseIpv4('10.244.01.2'), undefined);
    assert.equal(parseIpv4('10.244.1'), undefined);
    assert.equal(formatCidr(parseCidr('10.244.1.7/16', 'x')), '10.244.0.0/16');
    assert.throws(() => parseCidr('10.244.1.7/16', 'x', { strict: true }), /x: "10\.244\.1\.7\/16" has host bits set; expected 10\.244\.0\.0\/16/);
    assert.throws(() => parseClusterCidr('10.244.0.0/25'), /expected a prefix length from 8 to 24/);
  });

  it('numbers the /24s of a cluster range', () => {
    const c = parseClusterCidr('10.244.0.0/16');
    assert.equal(nodeSubnetCount(c), 256);
    assert.equal(formatCidr(nodeSubnet(c, 5)), '10.244.5.0/24');
    assert.equal(nodeSubnetIndex(c, '10.244.5.0/24'), 5);
    assert.equal(nodeSubnetIndex(c, '10.245.5.0/24'), undefined);
    assert.equal(nodeSubnetIndex(c, '10.244.5.0/25'), undefined);
  });

  it('accepts the three network modes and empty for cluster', () => {
    assert.equal(parseNetworkMode(undefined), 'cluster');
    assert.equal(parseNetworkMode(''), 'cluster');
    assert.equal(parseNetworkMode('host'), 'host');
    assert.throws(() => parseNetworkMode('bridge', '--network'), /--network: expected one of "cluster", "host", "none", got "bridge"/);
  });
});

describe('workload spec.network', () => {
  const file = (network: string) => ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', '  image: busybox', `  network: ${network}`, ''].join('\n');

  it('keeps host and none, leaves the default cluster out, and refuses other values', async () => {
    const { validateWorkloadFile, canonicalWorkloadSpec, ValidationError } = await import('../../lib/index.js');
    const { containerSpecFor } = await import('../../controller/reconcile/decide.js');
    const host = validateWorkloadFile(file('host'), { defaultRegistry: '127.0.0.1:5000' })[0]!.spec;
    assert.equal(host.network, 'host');
    assert.equal(containerSpecFor('web', host).network, 'host');
    const cluster = validateWorkloadFile(file('cluster'), { defaultRegistry: '127.0.0.1:5000' })[0]!.spec;
    assert.equal(cluster.network, undefined);
    assert.equal(containerSpecFor('web', cluster).network, undefined);
    assert.notEqual(canonicalWorkloadSpec(host), canonicalWorkloadSpec(cluster));
    assert.throws(() => validateWorkloadFile(file('bridge'), { defaultRegistry: '127.0.0.1:5000' }), (err: unknown) => err instanceof ValidationError && /spec\.network/.test(err.message) && /"cluster", "host", "none"/.test(err.message));
  });
});
