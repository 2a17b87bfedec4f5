/**
 * `berth agent`: one per node. Wiring only: parse settings, detect the node's
 * facts, start the agent API, register with the controller, heartbeat on NATS,
 * and stop cleanly on SIGTERM/SIGINT.
 *
 * Exit codes: 0 after a clean stop, 1 when it cannot run (e.g. the listen
 * address is taken, the controller rejects the node), 2 for usage errors.
 */
import { mkdirSync, statSync } from 'node:fs';
import os from 'node:os';
import { Command, CommanderError } from 'commander';
import {
  BERTH_VERSION,
  FailedPreconditionError,
  CancelledError,
  InvalidArgumentError,
  createLogger,
  messageOf,
  parseLogLevel,
  parsers,
  resolveConfig,
  type Logger,
  type Setting,
} from '../lib/index.js';
import { buildNodeSpec, detectNodeFacts, grpcRegistrar, registerWithRetry } from './node/index.js';
import { startAgentServer, type AgentServer } from './api/index.js';
import { StatusPublisher } from './status/index.js';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function nodeName(raw: string, source: string): string {
  if (!DNS_LABEL.test(raw)) {
    throw new InvalidArgumentError(`${source}: expected a node name of 1-63 lowercase letters, digits and "-", starting and ending with a letter or digit, got "${raw}"`, { field: source });
  }
  return raw;
}

function defaultNodeName(): string {
  const h = os.hostname().toLowerCase().split('.')[0] ?? '';
  return DNS_LABEL.test(h) ? h : '';
}

/** The agent's settings: flag > environment > config file > default. */
export const agentSettings = {
  controller: { flag: 'controller', env: 'BERTH_CONTROLLER', parse: parsers.hostPort, default: '127.0.0.1:7070' } as Setting<string>,
  nats: { flag: 'nats', env: 'BERTH_NATS', parse: parsers.urlList, default: ['nats://127.0.0.1:4222'] } as Setting<string[]>,
  node: { flag: 'node', env: 'BERTH_NODE', parse: nodeName, default: defaultNodeName() } as Setting<string>,
  root: { flag: 'root', env: 'BERTH_ROOT', parse: parsers.string, default: '/var/lib/berth' } as Setting<string>,
  labels: { flag: 'labels', env: 'BERTH_LABELS', parse: parsers.labels, default: {} } as Setting<Record<string, string>>,
  listen: { flag: 'listen', env: 'BERTH_AGENT_LISTEN', parse: parsers.hostPort, default: '127.0.0.1:7071' } as Setting<string>,
  address: { flag: 'address', env: 'BERTH_AGENT_ADDRESS', parse: parsers.hostPort, default: '' } as Setting<string>,
  logLevel: { flag: 'log-level', env: 'BERTH_LOG_LEVEL', key: 'log-level', parse: (raw: string, source: string) => parseLogLevel(raw, source), default: 'info' } as Setting<string>,
};

class UsageError extends Error {}

function buildCommand(): Command {
  const cmd = new Command('berth agent')
    .description('run the node agent: registers this node with the controller and heartbeats on NATS')
    .option('--controller <host:port>', 'controller address (env BERTH_CONTROLLER; default 127.0.0.1:7070)')
    .option('--nats <urls>', 'NATS server URLs, comma-separated (env BERTH_NATS; default nats://127.0.0.1:4222)')
    .option('--node <name>', 'node name, a DNS label (env BERTH_NODE; default the host name)')
    .option('--root <dir>', 'state directory, created 0700 (env BERTH_ROOT; default /var/lib/berth)')
    .option('--labels <k=v,...>', 'node labels, comma-separated key=value pairs (env BERTH_LABELS)')
    .option('--listen <host:port>', 'agent API listen address; port 0 picks one (default 127.0.0.1:7071)')
    .option('--address <host:port>', 'agent API address the controller dials (default: the listen address)')
    .option('--config <file>', 'YAML file with any of the settings above (flags and environment win)')
    .option('--log-level <level>', 'error, warn, info or debug (env BERTH_LOG_LEVEL; default info)')
    .addHelpText('after', `
Examples:
  berth agent --controller 127.0.0.1:7070 --nats nats://127.0.0.1:4222 --node node-1 --root /var/lib/berth
  BERTH_NODE=node-2 berth agent --labels zone=a,disk=ssd --listen 0.0.0.0:7071 --address 10.0.0.2:7071`)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
    });
  return cmd;
}

/** The address the controller should dial: --address, or the bound address with a routable host. */
function advertisedAddress(explicit: string, bound: string): string {
  if (explicit !== '') return explicit;
  const i = bound.lastIndexOf(':');
  const host = bound.slice(0, i);
  const port = bound.slice(i + 1);
  if (host === '0.0.0.0' || host === '::' || host === '[::]') return `${os.hostname()}:${port}`;
  return bound;
}

function ensureRoot(root: string, log: Logger): void {
  let existed = true;
  try {
    statSync(root);
  } catch {
    existed = false;
  }
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new FailedPreconditionError(`failed to create root directory "${root}": ${messageOf(err)}`, { cause: err });
  }
  const st = statSync(root);
  if (!st.isDirectory()) throw new FailedPreconditionError(`failed to use root directory "${root}": expected a directory`);
  if (existed && (st.mode & 0o077) !== 0) {
    log.warn('root directory is accessible to other users; expected mode 0700', { root, mode: (st.mode & 0o777).toString(8) });
  }
}

/** Resolves after the first SIGTERM or SIGINT. */
function stopSignal(): { promise: Promise<string>; dispose(): void } {
  let handler: (sig: NodeJS.Signals) => void = () => undefined;
  const promise = new Promise<string>((resolve) => {
    handler = (sig) => resolve(sig);
  });
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
  return {
    promise,
    dispose() {
      process.removeListener('SIGTERM', handler);
      process.removeListener('SIGINT', handler);
    },
  };
}

export async function runAgent(argv: string[]): Promise<number> {
  const cmd = buildCommand();
  let flags: Record<string, unknown>;
  try {
    cmd.parse(argv, { from: 'user' });
    flags = cmd.opts();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }

  let cfg: ReturnType<typeof resolveConfig<typeof agentSettings>>;
  let logger: Logger;
  try {
    cfg = resolveConfig(agentSettings, { flags, file: typeof flags['config'] === 'string' ? flags['config'] : undefined });
    if (cfg.node === '') throw new UsageError('--node: the host name is not a valid node name; give one with --node or BERTH_NODE');
    logger = createLogger({ level: cfg.logLevel, defaultMeta: { program: 'agent', node: cfg.node } });
  } catch (err) {
    process.stderr.write(`error: ${messageOf(err)}\n`);
    return 2;
  }

  const signals = stopSignal();
  const abort = new AbortController();
  void signals.promise.then((sig) => {
    logger.info('stopping', { signal: sig });
    abort.abort();
  });

  let server: AgentServer | undefined;
  let publisher: StatusPublisher | undefined;
  const registrar = grpcRegistrar(cfg.controller);
  try {
    ensureRoot(cfg.root, logger);
    const facts = detectNodeFacts();
    logger.info('node facts', { ...facts });
    server = await startAgentServer({ listen: cfg.listen, logger });
    const spec = buildNodeSpec(
      { name: cfg.node, labels: cfg.labels, address: advertisedAddress(cfg.address, server.address), agentVersion: BERTH_VERSION },
      facts,
    );
    const registered = await registerWithRetry(registrar, spec, { logger, signal: abort.signal });
    registrar.close();
    publisher = await StatusPublisher.connect({ servers: cfg.nats, node: cfg.node, logger, signal: abort.signal });
    const intervalMs = registered.heartbeatIntervalMs > 0 ? registered.heartbeatIntervalMs : 1000;
    publisher.startHeartbeats({ intervalMs, capacity: spec.capacity, containers: () => 0 });
    logger.info('agent running', { node: cfg.node, address: spec.address, instance: publisher.instance, heartbeatIntervalMs: intervalMs });
    await signals.promise;
    return 0;
  } catch (err) {
    if (err instanceof CancelledError && abort.signal.aborted) return 0;
    logger.error('agent failed', { reason: messageOf(err) });
    process.stderr.write(`error: ${messageOf(err)}\n`);
    return 1;
  } finally {
    signals.dispose();
    registrar.close();
    await publisher?.close();
    await server?.close();
    // stderr is synchronous for files and pipes on Linux, so nothing is lost by returning now.
    logger.info('stopped');
  }
}
