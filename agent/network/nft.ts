/**
 * The node's nftables table (`ip berth`), owned by the agent and replaced as
 * a whole (one `nft -f` transaction) whenever the published ports change:
 *
 *   prerouting/output (nat)  DNAT of published host ports of single
 *                            containers (`berth run -p`) to container
 *                            addresses: `HOSTPORT/proto` on a local address
 *                            of the node (or the port's host address) goes
 *                            to `CONTAINER_IP:CONTAINERPORT`. A workload's
 *                            replicas have none here: their published ports
 *                            are the routing mesh's (services.ts,
 *                            `ip berth_svc`), on every node.
 *   postrouting (nat)        masquerade of a container reaching a published
 *                            port of its own node (hairpin), and of traffic
 *                            from the node's subnet leaving the cluster
 *                            range; traffic between cluster addresses is
 *                            never NATed (a container sees its peer's real
 *                            address).
 */
import { parseCidr, parseIpv4, type PublishedPort } from '../../lib/index.js';

export const NFT_FAMILY = 'ip';
export const NFT_TABLE = 'berth';

export interface PortMapping extends PublishedPort {
  containerId: string;
  containerIp: string;
}

export interface TableInput {
  bridge: string;
  /** The node's container subnet ("" when it has none). */
  subnet: string;
  clusterCidr: string;
  ports: readonly PortMapping[];
}

function quote(s: string): string {
  if (!/^[A-Za-z0-9_.:/-]*$/.test(s)) throw new Error(`refusing to put ${JSON.stringify(s)} in an nft script`);
  return `"${s}"`;
}

/** The number of DNAT rules the table holds for `ports` (what verification expects). */
export function expectedDnatRules(ports: readonly PortMapping[]): number {
  return ports.length * 2;
}

/** The nft script that replaces the table atomically with one for `input`. */
export function renderTable(input: TableInput): string {
  const t = `${NFT_FAMILY} ${NFT_TABLE}`;
  const pre: string[] = [];
  const out: string[] = [];
  quote(input.bridge);
  if (input.subnet !== '') parseCidr(input.subnet, 'subnet');
  parseCidr(input.clusterCidr, 'cluster-cidr');
  for (const p of input.ports) {
    // Everything that goes into the script is checked again here: it is the last line before the kernel.
    if (parseIpv4(p.containerIp) === undefined || (p.hostIp !== '' && parseIpv4(p.hostIp) === undefined)) throw new Error(`refusing address ${JSON.stringify(p.containerIp)} / ${JSON.stringify(p.hostIp)} in an nft script`);
    if (![p.hostPort, p.containerPort].every((n) => Number.isInteger(n) && n >= 1 && n <= 65535) || (p.protocol !== 'tcp' && p.protocol !== 'udp')) throw new Error(`refusing port ${p.hostPort}:${p.containerPort}/${p.protocol} in an nft script`);
    const match = `${p.protocol} dport ${p.hostPort}`;
    const target = `dnat to ${p.containerIp}:${p.containerPort}`;
    const comment = `comment ${quote(`c:${p.containerId.slice(0, 64)}`)}`;
    if (p.hostIp !== '') {
      pre.push(`ip daddr ${p.hostIp} ${match} ${target} ${comment}`);
      out.push(`ip daddr ${p.hostIp} ${match} ${target} ${comment}`);
    } else {
      pre.push(`fib daddr type local ${match} ${target} ${comment}`);
      out.push(`fib daddr type local ip daddr != 127.0.0.0/8 ${match} ${target} ${comment}`);
    }
  }
  const post: string[] = [];
  if (input.subnet !== '') {
    post.push(`oifname ${quote(input.bridge)} ct status dnat ip saddr ${input.subnet} masquerade comment "hairpin"`);
    post.push(`ip saddr ${input.subnet} ip daddr ${input.clusterCidr} return comment "no NAT inside the cluster"`);
    post.push(`ip saddr ${input.subnet} oifname != ${quote(input.bridge)} masquerade comment "egress"`);
  }
  const chain = (name: string, head: string, rules: string[]) => [`  chain ${name} {`, `    ${head}`, ...rules.map((r) => `    ${r}`), '  }'];
  return [
    `table ${t} {}`,
    `delete table ${t}`,
    `table ${t} {`,
    ...chain('prerouting', 'type nat hook prerouting priority dstnat; policy accept;', pre),
    ...chain('output', 'type nat hook output priority -100; policy accept;', out),
    ...chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', post),
    '}',
    '',
  ].join('\n');
}

/** Counts the DNAT rules in `nft -j list table` output. */
export function countDnatRules(items: readonly unknown[]): number {
  let n = 0;
  for (const i of items) {
    const rule = (i as { rule?: { expr?: unknown[] } }).rule;
    if (rule && (rule.expr ?? []).some((e) => typeof e === 'object' && e !== null && 'dnat' in e)) n++;
  }
  return n;
}
