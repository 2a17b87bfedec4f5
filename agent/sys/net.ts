/**
 * Kernel-facing network operations of the agent: CNI plugin calls, network
 * namespaces, routes and nftables, all by spawning the standard tools
 * (`/usr/lib/cni/*`, `ip`, `nft`). agent/network is written against the
 * `NetOps` interface; `LinuxNetOps` is the real one.
 *
 * Vocabulary
 *   node netns   the network namespace the node's own networking lives in
 *                (bridge, routes, nft table). Normally the agent's own; a
 *                test may name another one (`nodeNetns`), and then every
 *                command runs inside it through `nsenter --net=`.
 *   container netns  a named namespace (`ip netns add NAME`, bind-mounted
 *                at /run/netns/NAME) that a container's attempts join.
 *   route proto  routes the agent owns carry `proto BERTH_ROUTE_PROTO`, so
 *                they can be listed and flushed without touching others.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { BerthError, CancelledError, ErrorCode } from '../../lib/errors.js';

/** Routing protocol number marking the routes the agent owns (`ip route ... proto 198`). */
export const BERTH_ROUTE_PROTO = 198;
/** Where Debian's containernetworking-plugins install the CNI plugins. */
export const DEFAULT_CNI_PATH = '/usr/lib/cni';
const TOOL_TIMEOUT_MS = 30_000;

/** A network tool failed (non-zero exit, or could not be started); `tool` names it, `detail` is its message. */
export class NetToolError extends BerthError {
  override name = 'NetToolError';
  readonly tool: string;
  readonly detail: string;
  constructor(tool: string, detail: string, options: { cause?: unknown; code?: ErrorCode } = {}) {
    super(options.code ?? ErrorCode.Internal, `failed to run ${tool}: ${detail}`, options);
    this.tool = tool;
    this.detail = detail;
  }
}

/** A CNI plugin returned an error result (CNI spec "Error" object). */
export class CniPluginError extends NetToolError {
  override name = 'CniPluginError';
  readonly plugin: string;
  readonly cniCode: number;
  constructor(plugin: string, command: string, cniCode: number, msg: string, options: { cause?: unknown } = {}) {
    super(`CNI plugin "${plugin}" ${command}`, `error ${cniCode}: ${msg}`, options);
    this.plugin = plugin;
    this.cniCode = cniCode;
  }
}

export interface CniInvocation {
  /** Plugin binary name in the CNI path ("bridge", "loopback"). */
  plugin: string;
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** Path of the container's network namespace. */
  netns: string;
  ifname: string;
  /** The network configuration (CNI spec "network configuration" for one plugin). */
  config: Record<string, unknown>;
}

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
}

/**
 * The network operations agent/network needs. Every method rejects with
 * NetToolError naming the tool and carrying its message.
 */
export interface NetOps {
  /** Runs a CNI plugin per the CNI spec; resolves with its parsed result (`{}` for DEL). */
  cni(call: CniInvocation, opts?: { signal?: AbortSignal }): Promise<Record<string, unknown>>;
  /** Creates a named network namespace; resolves with its path (/run/netns/NAME). */
  createNetns(name: string): Promise<string>;
  /** Deletes a named network namespace; missing is fine. */
  deleteNetns(name: string): Promise<void>;
  netnsExists(name: string): boolean;
  /** Adds or replaces a route owned by the agent (proto BERTH_ROUTE_PROTO) in the node netns. */
  replaceRoute(dst: string, gateway: string): Promise<void>;
  /** Deletes an agent-owned route; missing is fine. */
  deleteRoute(dst: string): Promise<void>;
  /** The agent-owned IPv4 routes of the node netns. */
  listRoutes(): Promise<IpRoute[]>;
  /** Applies an nft script (`nft -f -`: one transaction, all or nothing) in the node netns. */
  nftApply(script: string): Promise<void>;
  /** `nft -j list table FAMILY NAME`, parsed; undefined when the table does not exist. */
  nftListTable(family: string, name: string): Promise<unknown[] | undefined>;
  /** Deletes an nft table; missing is fine. */
  nftDeleteTable(family: string, name: string): Promise<void>;
  /** Deletes a link in the node netns; missing is fine. */
  deleteLink(name: string): Promise<void>;
  linkExists(name: string): Promise<boolean>;
  /** IPv4 addresses (with prefix length) of the node netns's interfaces other than lo. */
  nodeAddresses(): Promise<{ ifname: string; address: string; prefixLen: number }[]>;
  /** Path of the node netns, for containers that share it (network "host"). */
  nodeNetnsPath(): string;
}

/** A VXLAN device of the node netns as the kernel reports it. */
export interface VxlanLink {
  name: string;
  /** Link kind ("vxlan"; another kind means the name is taken by something else). */
  kind: string;
  vni: number;
  /** Underlay source address ("" when none is set). */
  local: string;
  /** UDP destination port. */
  port: number;
  learning: boolean;
  mtu: number;
  mac: string;
  up: boolean;
  /** IPv4 addresses with prefix length ("10.244.3.0/32"). */
  addresses: string[];
}

/** A unicast forwarding entry of a VXLAN device: frames for `mac` go to the underlay address `dst`. */
export interface FdbEntry {
  mac: string;
  dst: string;
}

/** A neighbour (ARP) entry of a device. */
export interface NeighbourEntry {
  address: string;
  mac: string;
  permanent: boolean;
}

export interface VxlanSpec {
  name: string;
  vni: number;
  local: string;
  port: number;
  mtu: number;
  mac: string;
}

/**
 * Operations on a VXLAN device in the node netns (agent/network's VXLAN
 * routing). Every method rejects with NetToolError naming the tool.
 */
export interface VxlanOps {
  /** The link `name` with its VXLAN attributes; undefined when there is no such link. */
  getVxlan(name: string): Promise<VxlanLink | undefined>;
  /** Creates a VXLAN device (`nolearning`, no default remote) with the spec's VNI, local address, UDP port, MTU and MAC, and sets it up. */
  createVxlan(spec: VxlanSpec): Promise<void>;
  /** Sets the MTU and MAC of a link and sets it up. */
  setLink(name: string, attrs: { mtu: number; mac: string }): Promise<void>;
  /** Adds an IPv4 address ("a.b.c.d/len") to a link. */
  addAddress(dev: string, cidr: string): Promise<void>;
  /** Removes an IPv4 address from a link; missing is fine. */
  deleteAddress(dev: string, cidr: string): Promise<void>;
  /** The unicast forwarding entries of a device that have an underlay destination. */
  listFdb(dev: string): Promise<FdbEntry[]>;
  /** Adds or replaces the permanent forwarding entry for `mac` (`bridge fdb replace ... dst`). */
  replaceFdb(dev: string, entry: FdbEntry): Promise<void>;
  /** Deletes one forwarding entry; missing is fine. */
  deleteFdb(dev: string, entry: FdbEntry): Promise<void>;
  /** The IPv4 neighbour entries of a device that have a link-layer address. */
  listNeighbours(dev: string): Promise<NeighbourEntry[]>;
  /** Adds or replaces a permanent neighbour entry. */
  replaceNeighbour(dev: string, address: string, mac: string): Promise<void>;
  /** Deletes a neighbour entry; missing is fine. */
  deleteNeighbour(dev: string, address: string): Promise<void>;
  /** Adds or replaces an agent-owned route (proto BERTH_ROUTE_PROTO) `dst via gateway dev DEV onlink`. */
  replaceRouteOnlink(dst: string, gateway: string, dev: string): Promise<void>;
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runTool(cmd: string, args: readonly string[], opts: { input?: string; env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new CancelledError(`${cmd} cancelled`));
      return;
    }
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], signal: opts.signal, timeout: TOOL_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.name === 'AbortError') reject(new CancelledError(`${cmd} cancelled`, { cause: e }));
      else reject(new NetToolError(cmd, e.message, { cause: e }));
    });
    child.on('close', (code, sig) => {
      resolve({ code: code ?? (sig ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

function checkName(what: string, name: string): void {
  if (!NAME.test(name)) throw new NetToolError(what, `invalid name "${name}": expected letters, digits, "_", "." or "-"`, { code: ErrorCode.InvalidArgument });
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function checkIpv4(what: string, address: string): void {
  if (!IPV4.test(address)) throw new NetToolError(what, `invalid IPv4 address "${address}"`, { code: ErrorCode.InvalidArgument });
}

function checkCidr(what: string, cidr: string): void {
  const [address = '', bits = '', ...rest] = cidr.split('/');
  if (rest.length > 0 || !IPV4.test(address) || !/^([0-9]|[12][0-9]|3[0-2])$/.test(bits)) throw new NetToolError(what, `invalid IPv4 CIDR "${cidr}"`, { code: ErrorCode.InvalidArgument });
}

function checkMac(what: string, mac: string): void {
  if (!MAC.test(mac)) throw new NetToolError(what, `invalid MAC address "${mac}": expected six lowercase hex pairs separated by ":"`, { code: ErrorCode.InvalidArgument });
}

function checkInt(what: string, field: string, n: number, min: number, max: number): void {
  if (!Number.isInteger(n) || n < min || n > max) throw new NetToolError(what, `invalid ${field} ${n}: expected a whole number from ${min} to ${max}`, { code: ErrorCode.InvalidArgument });
}

export interface LinuxNetOpsOptions {
  /** Path of the node netns when it is not this process's own (tests: /run/netns/<host>). */
  nodeNetns?: string;
  /** Where the CNI plugins are; default /usr/lib/cni. */
  cniPath?: string;
}

export class LinuxNetOps implements NetOps, VxlanOps {
  private readonly nodeNetns: string | undefined;
  readonly cniPath: string;

  constructor(opts: LinuxNetOpsOptions = {}) {
    this.nodeNetns = opts.nodeNetns;
    this.cniPath = opts.cniPath ?? DEFAULT_CNI_PATH;
  }

  /** Runs a tool in the node netns. */
  private inNode(cmd: string, args: readonly string[], opts: { input?: string; env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {}): Promise<RunResult> {
    if (this.nodeNetns === undefined) return runTool(cmd, args, opts);
    return runTool('nsenter', [`--net=${this.nodeNetns}`, '--', cmd, ...args], opts);
  }

  private async must(what: string, cmd: string, args: readonly string[], opts: { input?: string } = {}): Promise<string> {
    const r = await this.inNode(cmd, args, opts);
    if (r.code !== 0) throw new NetToolError(what, `${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  nodeNetnsPath(): string {
    return this.nodeNetns ?? `/proc/${process.pid}/ns/net`;
  }

  async cni(call: CniInvocation, opts: { signal?: AbortSignal } = {}): Promise<Record<string, unknown>> {
    if (!/^[a-z0-9-]+$/.test(call.plugin)) throw new NetToolError('CNI', `invalid plugin name "${call.plugin}"`, { code: ErrorCode.InvalidArgument });
    const bin = `${this.cniPath}/${call.plugin}`;
    if (!existsSync(bin)) {
      throw new NetToolError(`CNI plugin "${call.plugin}"`, `${bin} does not exist (install containernetworking-plugins)`, { code: ErrorCode.FailedPrecondition });
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: call.command,
      CNI_CONTAINERID: call.containerId,
      CNI_NETNS: call.netns,
      CNI_IFNAME: call.ifname,
      CNI_PATH: this.cniPath,
    };
    const r = await this.inNode(bin, [], { input: JSON.stringify(call.config), env, signal: opts.signal });
    let parsed: Record<string, unknown> = {};
    const text = r.stdout.trim();
    if (text !== '') {
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch (err) {
        if (r.code === 0) throw new NetToolError(`CNI plugin "${call.plugin}" ${call.command}`, `unparsable result: ${text.slice(0, 200)}`, { cause: err });
      }
    }
    if (r.code !== 0) {
      const code = typeof parsed['code'] === 'number' ? parsed['code'] : r.code;
      const msg = [parsed['msg'], parsed['details']].filter((x) => typeof x === 'string' && x !== '').join(': ') || r.stderr.trim() || text || `exit ${r.code}`;
      throw new CniPluginError(call.plugin, call.command, code, msg);
    }
    return parsed;
  }

  async createNetns(name: string): Promise<string> {
    checkName('ip netns add', name);
    const r = await runTool('ip', ['netns', 'add', name]);
    if (r.code !== 0) throw new NetToolError('ip netns add', `namespace "${name}": ${r.stderr.trim()}`, { code: /exists/i.test(r.stderr) ? ErrorCode.AlreadyExists : ErrorCode.Internal });
    return `/run/netns/${name}`;
  }

  async deleteNetns(name: string): Promise<void> {
    checkName('ip netns delete', name);
    if (!this.netnsExists(name)) return;
    const r = await runTool('ip', ['netns', 'delete', name]);
    if (r.code !== 0 && this.netnsExists(name)) throw new NetToolError('ip netns delete', `namespace "${name}": ${r.stderr.trim()}`);
  }

  netnsExists(name: string): boolean {
    return existsSync(`/run/netns/${name}`);
  }

  async replaceRoute(dst: string, gateway: string): Promise<void> {
    await this.must('ip route replace', 'ip', ['-4', 'route', 'replace', dst, 'via', gateway, 'proto', String(BERTH_ROUTE_PROTO)]);
  }

  async deleteRoute(dst: string): Promise<void> {
    const r = await this.inNode('ip', ['-4', 'route', 'delete', dst, 'proto', String(BERTH_ROUTE_PROTO)]);
    if (r.code !== 0 && !/No such process|not found|Cannot find/i.test(r.stderr)) throw new NetToolError('ip route delete', `${dst}: ${r.stderr.trim()}`);
  }

  async listRoutes(): Promise<IpRoute[]> {
    const out = await this.must('ip route show', 'ip', ['-4', '-j', 'route', 'show', 'proto', String(BERTH_ROUTE_PROTO)]);
    return out.trim() === '' ? [] : (JSON.parse(out) as IpRoute[]);
  }

  async nftApply(script: string): Promise<void> {
    await this.must('nft -f', 'nft', ['-f', '-'], { input: script });
  }

  async nftListTable(family: string, name: string): Promise<unknown[] | undefined> {
    checkName('nft list table', name);
    const r = await this.inNode('nft', ['-j', 'list', 'table', family, name]);
    if (r.code !== 0) {
      if (/No such file|does not exist/i.test(r.stderr)) return undefined;
      throw new NetToolError('nft list table', `${family} ${name}: ${r.stderr.trim()}`);
    }
    return (JSON.parse(r.stdout) as { nftables: unknown[] }).nftables;
  }

  async nftDeleteTable(family: string, name: string): Promise<void> {
    checkName('nft delete table', name);
    const r = await this.inNode('nft', ['delete', 'table', family, name]);
    if (r.code !== 0 && !/No such file|does not exist/i.test(r.stderr)) throw new NetToolError('nft delete table', `${family} ${name}: ${r.stderr.trim()}`);
  }

  async deleteLink(name: string): Promise<void> {
    checkName('ip link delete', name);
    const r = await this.inNode('ip', ['link', 'delete', name]);
    if (r.code !== 0 && !/Cannot find device|does not exist/i.test(r.stderr)) throw new NetToolError('ip link delete', `${name}: ${r.stderr.trim()}`);
  }

  async linkExists(name: string): Promise<boolean> {
    checkName('ip link show', name);
    const r = await this.inNode('ip', ['link', 'show', name]);
    return r.code === 0;
  }

  async nodeAddresses(): Promise<{ ifname: string; address: string; prefixLen: number }[]> {
    const out = await this.must('ip addr show', 'ip', ['-4', '-j', 'addr', 'show']);
    const links = JSON.parse(out) as { ifname: string; addr_info?: { family: string; local: string; prefixlen: number }[] }[];
    const res: { ifname: string; address: string; prefixLen: number }[] = [];
    for (const l of links) {
      if (l.ifname === 'lo') continue;
      for (const a of l.addr_info ?? []) if (a.family === 'inet') res.push({ ifname: l.ifname, address: a.local, prefixLen: a.prefixlen });
    }
    return res;
  }

  async getVxlan(name: string): Promise<VxlanLink | undefined> {
    checkName('ip link show', name);
    const r = await this.inNode('ip', ['-d', '-j', 'addr', 'show', 'dev', name]);
    if (r.code !== 0) {
      if (/does not exist|Cannot find device/i.test(r.stderr)) return undefined;
      throw new NetToolError('ip link show', `${name}: ${r.stderr.trim()}`);
    }
    const [l] = JSON.parse(r.stdout) as {
      ifname: string; mtu: number; address?: string; flags?: string[];
      linkinfo?: { info_kind?: string; info_data?: { id?: number; local?: string; port?: number; learning?: boolean } };
      addr_info?: { family: string; local: string; prefixlen: number }[];
    }[];
    if (!l) return undefined;
    const d = l.linkinfo?.info_data ?? {};
    return {
      name: l.ifname,
      kind: l.linkinfo?.info_kind ?? '',
      vni: d.id ?? 0,
      local: d.local ?? '',
      port: d.port ?? 0,
      learning: d.learning ?? true,
      mtu: l.mtu,
      mac: l.address ?? '',
      up: (l.flags ?? []).includes('UP'),
      addresses: (l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    };
  }

  async createVxlan(spec: VxlanSpec): Promise<void> {
    checkName('ip link add', spec.name);
    checkIpv4('ip link add', spec.local);
    checkMac('ip link add', spec.mac);
    checkInt('ip link add', 'VNI', spec.vni, 0, 16_777_215);
    checkInt('ip link add', 'port', spec.port, 1, 65_535);
    checkInt('ip link add', 'MTU', spec.mtu, 68, 65_535);
    await this.must('ip link add', 'ip', ['link', 'add', spec.name, 'type', 'vxlan', 'id', String(spec.vni), 'local', spec.local, 'dstport', String(spec.port), 'nolearning']);
    await this.setLink(spec.name, spec);
  }

  async setLink(name: string, attrs: { mtu: number; mac: string }): Promise<void> {
    checkName('ip link set', name);
    checkMac('ip link set', attrs.mac);
    checkInt('ip link set', 'MTU', attrs.mtu, 68, 65_535);
    await this.must('ip link set', 'ip', ['link', 'set', 'dev', name, 'mtu', String(attrs.mtu), 'address', attrs.mac, 'up']);
  }

  async addAddress(dev: string, cidr: string): Promise<void> {
    checkName('ip addr add', dev);
    checkCidr('ip addr add', cidr);
    await this.must('ip addr add', 'ip', ['-4', 'addr', 'replace', cidr, 'dev', dev]);
  }

  async deleteAddress(dev: string, cidr: string): Promise<void> {
    checkName('ip addr delete', dev);
    checkCidr('ip addr delete', cidr);
    const r = await this.inNode('ip', ['-4', 'addr', 'delete', cidr, 'dev', dev]);
    if (r.code !== 0 && !/Cannot assign|Cannot find device|does not exist/i.test(r.stderr)) throw new NetToolError('ip addr delete', `${cidr} on ${dev}: ${r.stderr.trim()}`);
  }

  async listFdb(dev: string): Promise<FdbEntry[]> {
    checkName('bridge fdb show', dev);
    const out = await this.must('bridge fdb show', 'bridge', ['-j', 'fdb', 'show', 'dev', dev]);
    const items = out.trim() === '' ? [] : (JSON.parse(out) as { mac?: string; dst?: string }[]);
    return items.filter((e) => typeof e.mac === 'string' && typeof e.dst === 'string' && e.mac !== '00:00:00:00:00:00').map((e) => ({ mac: e.mac as string, dst: e.dst as string }));
  }

  async replaceFdb(dev: string, entry: FdbEntry): Promise<void> {
    checkName('bridge fdb replace', dev);
    checkMac('bridge fdb replace', entry.mac);
    checkIpv4('bridge fdb replace', entry.dst);
    await this.must('bridge fdb replace', 'bridge', ['fdb', 'replace', entry.mac, 'dev', dev, 'dst', entry.dst, 'self', 'permanent']);
  }

  async deleteFdb(dev: string, entry: FdbEntry): Promise<void> {
    checkName('bridge fdb delete', dev);
    checkMac('bridge fdb delete', entry.mac);
    checkIpv4('bridge fdb delete', entry.dst);
    const r = await this.inNode('bridge', ['fdb', 'delete', entry.mac, 'dev', dev, 'dst', entry.dst, 'self']);
    if (r.code !== 0 && !/No such file|not found|Cannot find device|does not exist/i.test(r.stderr)) throw new NetToolError('bridge fdb delete', `${entry.mac} dst ${entry.dst} on ${dev}: ${r.stderr.trim()}`);
  }

  async listNeighbours(dev: string): Promise<NeighbourEntry[]> {
    checkName('ip neigh show', dev);
    const out = await this.must('ip neigh show', 'ip', ['-4', '-j', 'neigh', 'show', 'dev', dev]);
    const items = out.trim() === '' ? [] : (JSON.parse(out) as { dst?: string; lladdr?: string; state?: string[] }[]);
    return items.filter((e) => typeof e.dst === 'string' && typeof e.lladdr === 'string')
      .map((e) => ({ address: e.dst as string, mac: e.lladdr as string, permanent: (e.state ?? []).includes('PERMANENT') }));
  }

  async replaceNeighbour(dev: string, address: string, mac: string): Promise<void> {
    checkName('ip neigh replace', dev);
    checkIpv4('ip neigh replace', address);
    checkMac('ip neigh replace', mac);
    await this.must('ip neigh replace', 'ip', ['-4', 'neigh', 'replace', address, 'lladdr', mac, 'dev', dev, 'nud', 'permanent']);
  }

  async deleteNeighbour(dev: string, address: string): Promise<void> {
    checkName('ip neigh delete', dev);
    checkIpv4('ip neigh delete', address);
    const r = await this.inNode('ip', ['-4', 'neigh', 'delete', address, 'dev', dev]);
    if (r.code !== 0 && !/No such file|not found|Cannot find device|does not exist/i.test(r.stderr)) throw new NetToolError('ip neigh delete', `${address} on ${dev}: ${r.stderr.trim()}`);
  }

  async replaceRouteOnlink(dst: string, gateway: string, dev: string): Promise<void> {
    checkName('ip route replace', dev);
    checkCidr('ip route replace', dst);
    checkIpv4('ip route replace', gateway);
    await this.must('ip route replace', 'ip', ['-4', 'route', 'replace', dst, 'via', gateway, 'dev', dev, 'onlink', 'proto', String(BERTH_ROUTE_PROTO)]);
  }
}
