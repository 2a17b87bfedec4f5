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

export interface LinuxNetOpsOptions {
  /** Path of the node netns when it is not this process's own (tests: /run/netns/<host>). */
  nodeNetns?: string;
  /** Where the CNI plugins are; default /usr/lib/cni. */
  cniPath?: string;
}

export class LinuxNetOps implements NetOps {
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
}
