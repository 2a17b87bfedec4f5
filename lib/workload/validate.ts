/**
 * Validation of workload files (version 1).
 *
 * Lifecycle of one call: check the size; scan the YAML token tree (built
 * without recursion) for the document count and nesting depth, so a hostile
 * file cannot exhaust the stack; build the documents; then read every
 * non-empty document field by field, collecting every problem. When any
 * problem was found the whole file is refused with one ValidationError;
 * otherwise every document comes back validated and fully defaulted.
 */
import { Composer, isAlias, isMap, isScalar, LineCounter, Parser, type CST, type Document } from 'yaml';

type Token = CST.Token;
import { ValidationError } from '../errors.js';
import { checkCpu, checkMemory, checkPids } from '../quantity.js';
import { normalizeImageReference } from '../reference.js';
import type {
  HealthSpec,
  ObjectMeta,
  PlacementSpec,
  PortSpec,
  Resources,
  RestartSpec,
  UpdateSpec,
  WorkloadSpec,
} from '../../proto/gen/berth/v1/types.js';
import { checkAutoscaleAgainstSpec, readAutoscale } from './autoscale.js';
import { dnsLabelProblem, envNameProblem, labelKeyProblem, labelValueProblem, portNameProblem } from './names.js';
import { readVolumes } from './volumes.js';
import { NETWORK_MODES } from '../network.js';
import { drainSecondsFor, MAX_DRAIN_SECONDS } from './drain.js';
import {
  isUnset,
  itemPath,
  readBoolean,
  readEnum,
  readFields,
  readList,
  readString,
  readStringList,
  readStringMap,
  readWhole,
  ProblemList,
  Reporter,
  type FieldEntry,
} from './reader.js';
import {
  WORKLOAD_API_VERSION,
  WORKLOAD_KIND,
  WORKLOAD_LIMITS as L,
  type ValidatedWorkload,
  type ValidateWorkloadFileOptions,
  type WorkloadProblem,
} from './types.js';

/** Restart policies a workload may ask for. */
export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];
/** Port protocols. */
export const PORT_PROTOCOLS = ['tcp', 'udp'] as const;

/** Defaults filled in when a field is omitted (see docs/workload-file.md). */
export const WORKLOAD_DEFAULTS = {
  replicas: 1,
  restartPolicy: 'always' as RestartPolicy,
  backoffCapSeconds: 300,
  healthIntervalSeconds: 10,
  healthTimeoutSeconds: 2,
  healthFailureThreshold: 3,
  healthStartPeriodSeconds: 0,
  httpPath: '/',
  spread: true,
  maxPerNode: 0,
  maxSurge: 1,
  maxUnavailable: 0,
  protocol: 'tcp',
} as const;

const TOP_FIELDS = ['apiVersion', 'kind', 'metadata', 'spec'] as const;
const METADATA_FIELDS = ['name', 'labels'] as const;
const SPEC_FIELDS = ['replicas', 'image', 'command', 'args', 'env', 'resources', 'ports', 'restart', 'health', 'placement', 'update', 'volumes', 'autoscale', 'network', 'drainSeconds'] as const;
const RESOURCE_FIELDS = ['cpu', 'memory', 'pids'] as const;
const PORT_FIELDS = ['name', 'container', 'publish', 'protocol'] as const;
const RESTART_FIELDS = ['policy', 'backoffCapSeconds'] as const;
const HEALTH_FIELDS = ['http', 'tcp', 'exec', 'intervalSeconds', 'timeoutSeconds', 'failureThreshold', 'startPeriodSeconds'] as const;
const HTTP_FIELDS = ['port', 'path'] as const;
const TCP_FIELDS = ['port'] as const;
const PLACEMENT_FIELDS = ['nodeSelector', 'spread', 'maxPerNode'] as const;
const UPDATE_FIELDS = ['maxSurge', 'maxUnavailable'] as const;

/** The value of a field, or undefined when it is absent or null ("not set"). */
function field(fields: Map<string, FieldEntry>, name: string): unknown {
  const entry = fields.get(name);
  if (entry === undefined || isUnset(entry.value)) return undefined;
  return entry.value;
}

/** The node to point at for a field: its value, else its key, else the parent. */
function at(fields: Map<string, FieldEntry>, name: string, parent: unknown): unknown {
  const entry = fields.get(name);
  if (entry === undefined) return parent;
  return entry.value ?? entry.key;
}

function missing(r: Reporter, path: string, node: unknown, expected: string): void {
  r.report(path, node, `required field is missing (expected ${expected})`);
}

interface Context {
  r: Reporter;
  defaultRegistry: string | undefined;
}

/** Reads one non-empty document; undefined when it had problems. */
interface DocumentResult {
  /** Set when metadata was valid (even if the spec was not), for duplicate-name checks. */
  metadata?: ObjectMeta;
  /** The node of metadata.name, for pointing at duplicates. */
  nameNode?: unknown;
  /** Set only when the whole document was valid. */
  workload?: { metadata: ObjectMeta; spec: WorkloadSpec };
}

/** Reads one non-empty document. */
function readDocument(ctx: Context, root: unknown): DocumentResult {
  const { r } = ctx;
  const before = r.count;
  const top = readFields(r, root, '', TOP_FIELDS, `a mapping with ${TOP_FIELDS.join(', ')}`);
  if (top === undefined) return {};

  const apiVersion = field(top, 'apiVersion');
  if (apiVersion === undefined) missing(r, 'apiVersion', at(top, 'apiVersion', root), JSON.stringify(WORKLOAD_API_VERSION));
  else {
    const v = readString(r, apiVersion, 'apiVersion', `${JSON.stringify(WORKLOAD_API_VERSION)}`);
    if (v !== undefined && v !== WORKLOAD_API_VERSION) {
      r.report('apiVersion', apiVersion, `expected ${JSON.stringify(WORKLOAD_API_VERSION)} (the only supported version), got ${JSON.stringify(v)}`);
    }
  }
  const kind = field(top, 'kind');
  if (kind === undefined) missing(r, 'kind', at(top, 'kind', root), JSON.stringify(WORKLOAD_KIND));
  else {
    const v = readString(r, kind, 'kind', JSON.stringify(WORKLOAD_KIND));
    if (v !== undefined && v !== WORKLOAD_KIND) {
      r.report('kind', kind, `expected ${JSON.stringify(WORKLOAD_KIND)} (the only supported kind), got ${JSON.stringify(v)}`);
    }
  }

  const metadataNode = field(top, 'metadata');
  let metadata: ObjectMeta | undefined;
  let nameNode: unknown;
  if (metadataNode === undefined) missing(r, 'metadata', at(top, 'metadata', root), 'a mapping with name and optional labels');
  else [metadata, nameNode] = readMetadata(ctx, metadataNode);

  const specNode = field(top, 'spec');
  let spec: WorkloadSpec | undefined;
  if (specNode === undefined) missing(r, 'spec', at(top, 'spec', root), 'a mapping with at least image');
  else spec = readSpec(ctx, specNode);

  const result: DocumentResult = {};
  if (metadata !== undefined) {
    result.metadata = metadata;
    result.nameNode = nameNode;
  }
  if (r.count === before && metadata !== undefined && spec !== undefined) result.workload = { metadata, spec };
  return result;
}

/** Reads metadata; returns it (undefined when invalid) and the node of its name. */
function readMetadata(ctx: Context, node: unknown): [ObjectMeta | undefined, unknown] {
  const { r } = ctx;
  const fields = readFields(r, node, 'metadata', METADATA_FIELDS, 'a mapping with name and optional labels');
  if (fields === undefined) return [undefined, undefined];
  let name: string | undefined;
  const nameNode = field(fields, 'name');
  if (nameNode === undefined) missing(r, 'metadata.name', at(fields, 'name', node), 'a name such as "web"');
  else {
    name = readString(r, nameNode, 'metadata.name', 'a name such as "web"', { allowEmpty: true });
    if (name !== undefined) {
      const problem = dnsLabelProblem(name);
      if (problem !== undefined) {
        r.report('metadata.name', nameNode, problem);
        name = undefined;
      }
    }
  }
  let labels: Record<string, string> | undefined = {};
  const labelsNode = field(fields, 'labels');
  if (labelsNode !== undefined) labels = readLabelMap(r, labelsNode, 'metadata.labels');
  if (name === undefined || labels === undefined) return [undefined, nameNode];
  return [{ name, labels, uid: '', createdUnixMs: 0, updatedUnixMs: 0 }, nameNode];
}

function readLabelMap(r: Reporter, node: unknown, path: string): Record<string, string> | undefined {
  return readStringMap(r, node, path, {
    maxEntries: L.maxLabels,
    expected: 'a mapping of label keys to string values',
    keyProblem: labelKeyProblem,
    valueProblem: labelValueProblem,
  });
}

function readSpec(ctx: Context, node: unknown): WorkloadSpec | undefined {
  const { r } = ctx;
  const before = r.count;
  const fields = readFields(r, node, 'spec', SPEC_FIELDS, 'a mapping with at least image');
  if (fields === undefined) return undefined;

  const replicasNode = field(fields, 'replicas');
  const replicas = replicasNode === undefined ? WORKLOAD_DEFAULTS.replicas : readWhole(r, replicasNode, 'spec.replicas', 0, L.maxReplicas);

  let image: string | undefined;
  const imageNode = field(fields, 'image');
  if (imageNode === undefined) missing(r, 'spec.image', at(fields, 'image', node), 'an image reference such as "web:1.0" or "registry.example.com/team/web:1.0"');
  else {
    const text = readString(r, imageNode, 'spec.image', 'an image reference such as "web:1.0"');
    if (text !== undefined) {
      try {
        image = normalizeImageReference(text, ctx.defaultRegistry === undefined ? { field: 'spec.image' } : { field: 'spec.image', defaultRegistry: ctx.defaultRegistry });
      } catch (err) {
        r.report('spec.image', imageNode, err instanceof Error ? err.message : String(err));
      }
    }
  }

  const commandNode = field(fields, 'command');
  const command = commandNode === undefined ? [] : readStringList(r, commandNode, 'spec.command', L.maxArgs, { maxBytes: L.maxStringBytes, noNul: true });
  if (command !== undefined && command.length > 0 && command[0] === '') {
    r.report('spec.command[0]', commandNode, 'expected the program to run, got an empty string');
  }
  const argsNode = field(fields, 'args');
  const args = argsNode === undefined ? [] : readStringList(r, argsNode, 'spec.args', L.maxArgs, { maxBytes: L.maxStringBytes, noNul: true });

  const envNode = field(fields, 'env');
  const env =
    envNode === undefined
      ? {}
      : readStringMap(r, envNode, 'spec.env', {
          maxEntries: L.maxEnv,
          expected: 'a mapping of environment variable names to string values',
          keyProblem: envNameProblem,
          value: { maxBytes: L.maxStringBytes, noNul: true },
        });

  const resourcesNode = field(fields, 'resources');
  const resources = resourcesNode === undefined ? { cpuMillis: 0, memoryBytes: 0, pids: 0 } : readResources(r, resourcesNode);
  const portsNode = field(fields, 'ports');
  const ports = portsNode === undefined ? [] : readPorts(r, portsNode);
  const restartNode = field(fields, 'restart');
  const restart =
    restartNode === undefined
      ? { policy: WORKLOAD_DEFAULTS.restartPolicy, backoffCapSeconds: WORKLOAD_DEFAULTS.backoffCapSeconds }
      : readRestart(r, restartNode);
  const healthNode = field(fields, 'health');
  const health = healthNode === undefined ? undefined : readHealth(r, healthNode);
  const placementNode = field(fields, 'placement');
  const placement =
    placementNode === undefined
      ? { nodeSelector: {}, spread: WORKLOAD_DEFAULTS.spread, maxPerNode: WORKLOAD_DEFAULTS.maxPerNode }
      : readPlacement(r, placementNode);
  const volumesNode = field(fields, 'volumes');
  const volumes = volumesNode === undefined ? [] : readVolumes(r, volumesNode);
  const updateNode = field(fields, 'update');
  const update =
    updateNode === undefined
      ? { maxSurge: WORKLOAD_DEFAULTS.maxSurge, maxUnavailable: WORKLOAD_DEFAULTS.maxUnavailable }
      : readUpdate(r, updateNode);
  const drainNode = field(fields, 'drainSeconds');
  const drain = drainNode === undefined ? undefined : readWhole(r, drainNode, 'spec.drainSeconds', 0, MAX_DRAIN_SECONDS, 'a whole number of seconds');

  if (
    r.count > before ||
    replicas === undefined ||
    image === undefined ||
    command === undefined ||
    args === undefined ||
    env === undefined ||
    resources === undefined ||
    ports === undefined ||
    restart === undefined ||
    placement === undefined ||
    update === undefined
  ) {
    return undefined;
  }
  const spec: WorkloadSpec = { replicas, image, command, args, env, resources, ports, restart, placement, update };
  if (health !== undefined) spec.health = health;
  if (volumes !== undefined && volumes.length > 0) spec.volumes = { mounts: volumes };
  const networkNode = field(fields, 'network');
  if (networkNode !== undefined) {
    const network = readEnum(r, networkNode, 'spec.network', NETWORK_MODES);
    if (network === undefined) return undefined;
    // "cluster" is the default: left out, so the spec's canonical text stays the same.
    if (network !== 'cluster') spec.network = network;
  }
  // The default (DEFAULT_DRAIN_SECONDS with ports, 0 without) is left out, so the spec's canonical text stays the same.
  if (drain !== undefined && drain !== drainSecondsFor({ ports })) spec.drainSeconds = drain;
  const autoscaleNode = field(fields, 'autoscale');
  if (autoscaleNode !== undefined) {
    const autoscale = readAutoscale(r, autoscaleNode);
    if (autoscale === undefined) return undefined;
    spec.autoscale = autoscale;
    checkAutoscaleAgainstSpec(r, spec, autoscaleNode, replicasNode);
    if (r.count > before) return undefined;
  }
  return spec;
}

function readResources(r: Reporter, node: unknown): Resources | undefined {
  const fields = readFields(r, node, 'spec.resources', RESOURCE_FIELDS, 'a mapping with cpu, memory and pids');
  if (fields === undefined) return undefined;
  const out: Resources = { cpuMillis: 0, memoryBytes: 0, pids: 0 };
  let ok = true;
  const checks = [
    ['cpu', checkCpu, 'cpuMillis'],
    ['memory', checkMemory, 'memoryBytes'],
    ['pids', checkPids, 'pids'],
  ] as const;
  for (const [name, check, key] of checks) {
    const v = field(fields, name);
    if (v === undefined) continue;
    const path = `spec.resources.${name}`;
    if (isAlias(v)) {
      readString(r, v, path, 'a quantity'); // reports the alias
      ok = false;
      continue;
    }
    // Mappings and lists are passed as {} and [] so the check says "got a mapping" or "got a list".
    const result = check(isScalar(v) ? v.value : isMap(v) ? {} : []);
    if (result.ok) out[key] = result.value;
    else {
      r.report(path, v, result.problem);
      ok = false;
    }
  }
  return ok ? out : undefined;
}

function readPorts(r: Reporter, node: unknown): PortSpec[] | undefined {
  const items = readList(r, node, 'spec.ports', 'a list of ports', L.maxPorts);
  if (items === undefined) return undefined;
  const out: PortSpec[] = [];
  let ok = true;
  const names = new Map<string, string>();
  const containerPorts = new Map<string, string>();
  const published = new Map<string, string>();
  items.forEach((item, i) => {
    const path = itemPath('spec.ports', i);
    const fields = readFields(r, item, path, PORT_FIELDS, 'a mapping with container and optional name, publish and protocol');
    if (fields === undefined) {
      ok = false;
      return;
    }
    const before = r.count;
    let name = '';
    const nameNode = field(fields, 'name');
    if (nameNode !== undefined) {
      const s = readString(r, nameNode, `${path}.name`, 'a port name such as "http"');
      if (s !== undefined) {
        const problem = portNameProblem(s);
        if (problem !== undefined) r.report(`${path}.name`, nameNode, problem);
        else if (names.has(s)) r.report(`${path}.name`, nameNode, `duplicate port name ${JSON.stringify(s)} (also used by ${names.get(s)})`);
        else {
          names.set(s, path);
          name = s;
        }
      }
    }
    const containerNode = field(fields, 'container');
    let container: number | undefined;
    if (containerNode === undefined) missing(r, `${path}.container`, at(fields, 'container', item), 'the port the container listens on, from 1 to 65535');
    else container = readWhole(r, containerNode, `${path}.container`, 1, 65535, 'a port number');
    const publishNode = field(fields, 'publish');
    const publish = publishNode === undefined ? 0 : readWhole(r, publishNode, `${path}.publish`, 1, 65535, 'a host port number');
    const protocolNode = field(fields, 'protocol');
    const protocol = protocolNode === undefined ? WORKLOAD_DEFAULTS.protocol : readEnum(r, protocolNode, `${path}.protocol`, PORT_PROTOCOLS);
    if (container !== undefined && protocol !== undefined) {
      const key = `${container}/${protocol}`;
      const other = containerPorts.get(key);
      if (other !== undefined) r.report(`${path}.container`, containerNode, `duplicate container port ${key} (also used by ${other})`);
      else containerPorts.set(key, path);
    }
    if (publish !== undefined && publish !== 0 && protocol !== undefined) {
      const key = `${publish}/${protocol}`;
      const other = published.get(key);
      if (other !== undefined) r.report(`${path}.publish`, publishNode, `duplicate published port ${key} (also used by ${other})`);
      else published.set(key, path);
    }
    if (r.count > before || container === undefined || publish === undefined || protocol === undefined) {
      ok = false;
      return;
    }
    out.push({ name, container, publish, protocol });
  });
  return ok ? out : undefined;
}

function readRestart(r: Reporter, node: unknown): RestartSpec | undefined {
  const fields = readFields(r, node, 'spec.restart', RESTART_FIELDS, 'a mapping with policy and backoffCapSeconds');
  if (fields === undefined) return undefined;
  const policyNode = field(fields, 'policy');
  const policy = policyNode === undefined ? WORKLOAD_DEFAULTS.restartPolicy : readEnum(r, policyNode, 'spec.restart.policy', RESTART_POLICIES);
  const capNode = field(fields, 'backoffCapSeconds');
  const cap = capNode === undefined ? WORKLOAD_DEFAULTS.backoffCapSeconds : readWhole(r, capNode, 'spec.restart.backoffCapSeconds', 1, L.maxBackoffCapSeconds, 'a whole number of seconds');
  if (policy === undefined || cap === undefined) return undefined;
  return { policy, backoffCapSeconds: cap };
}

function readHealth(r: Reporter, node: unknown): HealthSpec | undefined {
  const fields = readFields(r, node, 'spec.health', HEALTH_FIELDS, 'a mapping with one of http, tcp or exec');
  if (fields === undefined) return undefined;
  const before = r.count;
  const out: HealthSpec = {
    exec: [],
    intervalSeconds: WORKLOAD_DEFAULTS.healthIntervalSeconds,
    timeoutSeconds: WORKLOAD_DEFAULTS.healthTimeoutSeconds,
    failureThreshold: WORKLOAD_DEFAULTS.healthFailureThreshold,
    startPeriodSeconds: WORKLOAD_DEFAULTS.healthStartPeriodSeconds,
  };
  const given = (['http', 'tcp', 'exec'] as const).filter((k) => field(fields, k) !== undefined);
  if (given.length !== 1) {
    const got = given.length === 0 ? 'none' : given.join(' and ');
    r.report('spec.health', node, `expected exactly one check: http, tcp or exec, got ${got}`);
  }
  const httpNode = field(fields, 'http');
  if (httpNode !== undefined) {
    const http = readFields(r, httpNode, 'spec.health.http', HTTP_FIELDS, 'a mapping with port and optional path');
    if (http !== undefined) {
      const portNode = field(http, 'port');
      let port: number | undefined;
      if (portNode === undefined) missing(r, 'spec.health.http.port', at(http, 'port', httpNode), 'a port number from 1 to 65535');
      else port = readWhole(r, portNode, 'spec.health.http.port', 1, 65535, 'a port number');
      const pathNode = field(http, 'path');
      let path: string | undefined = WORKLOAD_DEFAULTS.httpPath;
      if (pathNode !== undefined) {
        path = readString(r, pathNode, 'spec.health.http.path', 'a URL path starting with "/"', { maxBytes: 2048 });
        if (path !== undefined && (!path.startsWith('/') || /[\s\u0000-\u001f\u007f]/.test(path))) {
          r.report('spec.health.http.path', pathNode, `expected a URL path starting with "/" and without spaces or control characters, got ${JSON.stringify(path)}`);
        }
      }
      if (port !== undefined && path !== undefined) out.http = { port, path };
    }
  }
  const tcpNode = field(fields, 'tcp');
  if (tcpNode !== undefined) {
    const tcp = readFields(r, tcpNode, 'spec.health.tcp', TCP_FIELDS, 'a mapping with port');
    if (tcp !== undefined) {
      const portNode = field(tcp, 'port');
      if (portNode === undefined) missing(r, 'spec.health.tcp.port', at(tcp, 'port', tcpNode), 'a port number from 1 to 65535');
      else {
        const port = readWhole(r, portNode, 'spec.health.tcp.port', 1, 65535, 'a port number');
        if (port !== undefined) out.tcp = { port };
      }
    }
  }
  const execNode = field(fields, 'exec');
  if (execNode !== undefined) {
    const exec = readStringList(r, execNode, 'spec.health.exec', L.maxArgs, { maxBytes: L.maxStringBytes, noNul: true });
    if (exec !== undefined) {
      if (exec.length === 0 || exec[0] === '') {
        r.report('spec.health.exec', execNode, 'expected a command to run such as ["cat", "/tmp/ready"], got an empty command');
      } else out.exec = exec;
    }
  }
  const seconds = [
    ['intervalSeconds', 1, L.maxHealthSeconds],
    ['timeoutSeconds', 1, L.maxHealthSeconds],
    ['failureThreshold', 1, L.maxFailureThreshold],
    ['startPeriodSeconds', 0, L.maxStartPeriodSeconds],
  ] as const;
  for (const [name, min, max] of seconds) {
    const v = field(fields, name);
    if (v === undefined) continue;
    const n = readWhole(r, v, `spec.health.${name}`, min, max, name === 'failureThreshold' ? 'a whole number' : 'a whole number of seconds');
    if (n !== undefined) out[name] = n;
  }
  return r.count > before ? undefined : out;
}

function readPlacement(r: Reporter, node: unknown): PlacementSpec | undefined {
  const fields = readFields(r, node, 'spec.placement', PLACEMENT_FIELDS, 'a mapping with nodeSelector, spread and maxPerNode');
  if (fields === undefined) return undefined;
  const selectorNode = field(fields, 'nodeSelector');
  const nodeSelector = selectorNode === undefined ? {} : readLabelMap(r, selectorNode, 'spec.placement.nodeSelector');
  const spreadNode = field(fields, 'spread');
  const spread = spreadNode === undefined ? WORKLOAD_DEFAULTS.spread : readBoolean(r, spreadNode, 'spec.placement.spread');
  const maxNode = field(fields, 'maxPerNode');
  const maxPerNode = maxNode === undefined ? WORKLOAD_DEFAULTS.maxPerNode : readWhole(r, maxNode, 'spec.placement.maxPerNode', 0, L.maxReplicas);
  if (nodeSelector === undefined || spread === undefined || maxPerNode === undefined) return undefined;
  return { nodeSelector, spread, maxPerNode };
}

function readUpdate(r: Reporter, node: unknown): UpdateSpec | undefined {
  const fields = readFields(r, node, 'spec.update', UPDATE_FIELDS, 'a mapping with maxSurge and maxUnavailable');
  if (fields === undefined) return undefined;
  const surgeNode = field(fields, 'maxSurge');
  const maxSurge = surgeNode === undefined ? WORKLOAD_DEFAULTS.maxSurge : readWhole(r, surgeNode, 'spec.update.maxSurge', 0, L.maxReplicas);
  const unavailableNode = field(fields, 'maxUnavailable');
  const maxUnavailable =
    unavailableNode === undefined ? WORKLOAD_DEFAULTS.maxUnavailable : readWhole(r, unavailableNode, 'spec.update.maxUnavailable', 0, L.maxReplicas);
  if (maxSurge === undefined || maxUnavailable === undefined) return undefined;
  if (maxSurge === 0 && maxUnavailable === 0) {
    r.report('spec.update', node, 'expected maxSurge or maxUnavailable to be at least 1, got both 0 (an update could never make progress)');
    return undefined;
  }
  return { maxSurge, maxUnavailable };
}

/**
 * Counts documents and measures nesting in the token tree (built by yaml's
 * Parser, which does not recurse), without recursing ourselves.
 */
function scanTokens(tokens: readonly Token[]): { documents: number; depth: number; depthOffset: number } {
  let documents = 0;
  let depth = 0;
  let depthOffset = 0;
  for (const token of tokens) {
    if (token.type !== 'document') continue;
    documents++;
    const stack: Array<[unknown, number]> = [[token.value, 0]];
    while (stack.length > 0) {
      const [t, d] = stack.pop() as [unknown, number];
      if (t === null || typeof t !== 'object') continue;
      if (d > depth) {
        depth = d;
        depthOffset = typeof (t as { offset?: unknown }).offset === 'number' ? (t as { offset: number }).offset : 0;
      }
      if (depth > L.maxNesting) return { documents, depth, depthOffset };
      const items = (t as { items?: unknown }).items;
      if (Array.isArray(items)) {
        for (const item of items as Array<{ key?: unknown; value?: unknown }>) {
          stack.push([item.key, d + 1], [item.value, d + 1]);
        }
      }
    }
  }
  return { documents, depth, depthOffset };
}

function fileProblem(message: string, extra: Partial<WorkloadProblem> = {}): WorkloadProblem {
  return { path: '(file)', message, ...extra };
}

/**
 * Validates a workload file and returns one ValidatedWorkload per non-empty
 * document, in file order. Throws ValidationError listing every problem
 * (document index, field path, line, what was expected) when there is any.
 */
export function validateWorkloadFile(text: string, opts: ValidateWorkloadFileOptions = {}): ValidatedWorkload[] {
  const errorOptions = opts.source !== undefined ? { source: opts.source } : {};
  const fail = (problems: WorkloadProblem[]): never => {
    throw new ValidationError(problems, errorOptions);
  };
  if (typeof text !== 'string') fail([fileProblem(`expected the file contents as text, got ${typeof text}`)]);
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > L.maxFileBytes) fail([fileProblem(`the file is ${bytes} bytes (expected at most ${L.maxFileBytes} bytes)`)]);

  // Tokens first (no recursion), so hostile nesting is refused before the
  // recursive composer ever sees it; then the documents from the same tokens.
  const lineCounter = new LineCounter();
  const tokens = Array.from(new Parser(lineCounter.addNewLine).parse(text));
  const scan = scanTokens(tokens);
  if (scan.documents > L.maxDocuments) {
    fail([fileProblem(`the file has ${scan.documents} or more documents (expected at most ${L.maxDocuments})`)]);
  }
  if (scan.depth > L.maxNesting) {
    // Positions come from a fresh count, since the documents were not built.
    let line = 1;
    for (let i = text.indexOf('\n'); i >= 0 && i < scan.depthOffset; i = text.indexOf('\n', i + 1)) line++;
    fail([fileProblem(`mappings and lists are nested more than ${L.maxNesting} levels deep (line ${line})`, { line })]);
  }

  const composer = new Composer({ schema: 'core', version: '1.2', merge: false, uniqueKeys: true, strict: true });
  const documents: Document.Parsed[] = Array.from(composer.compose(tokens));
  const several = documents.length > 1;
  const problems = new ProblemList();
  const out: ValidatedWorkload[] = [];
  const names = new Map<string, number>();
  const ctx = (index: number): Context => ({
    r: new Reporter(lineCounter, several ? index : undefined, problems),
    defaultRegistry: opts.defaultRegistry,
  });

  documents.forEach((doc, index) => {
    const { r } = ctx(index);
    const yamlProblems = [...doc.errors, ...doc.warnings];
    if (yamlProblems.length > 0) {
      for (const e of yamlProblems) r.reportYaml(e.pos[0], e.message);
      return;
    }
    if (isUnset(doc.contents)) return; // an empty document (`---` alone or only comments)
    const result = readDocument(ctx(index), doc.contents);
    if (result.metadata !== undefined) {
      const name = result.metadata.name;
      const first = names.get(name);
      if (first !== undefined) {
        r.report('metadata.name', result.nameNode, `duplicate workload name ${JSON.stringify(name)} (also in document ${first + 1})`);
        return;
      }
      names.set(name, index);
    }
    if (result.workload !== undefined) out.push({ document: index, ...result.workload });
  });

  if (problems.count === 0 && out.length === 0) {
    fail([fileProblem(`the file has no workloads (expected at least one document with apiVersion: ${WORKLOAD_API_VERSION} and kind: ${WORKLOAD_KIND})`)]);
  }
  if (problems.count > 0) {
    const list = [...problems.kept];
    if (problems.dropped > 0) list.push(fileProblem(`${problems.dropped} more problems not shown (fix the ones above first)`));
    fail(list);
  }
  return out;
}
