/**
 * The controller's stream clients to agents (AgentStreamService in
 * proto/berth/v1/streams.proto): attach and exec streams the controller
 * relays between the CLI and the container's node.
 *
 * One client per node, made on first use and replaced when the node's address
 * changes, like AgentPool; built by main.ts and closed once with close().
 * Streams have no deadline (an interactive shell lasts as long as its user).
 */
import * as grpc from '@grpc/grpc-js';
import { UnavailableError, silentLogger, type Logger } from '../../lib/index.js';
import { AgentStreamServiceClient, type StreamInput, type StreamOutput } from '../../proto/gen/berth/v1/streams.js';

export type AgentStreamMethod = 'attach' | 'exec';

/** A duplex stream to an agent: write StreamInput, read StreamOutput ('data', 'end', 'error'). */
export type AgentStream = grpc.ClientDuplexStream<StreamInput, StreamOutput>;

/** Opens attach and exec streams to the agent of a node. */
export interface AgentStreamDialer {
  open(node: string, address: string, method: AgentStreamMethod): AgentStream;
}

export class AgentStreamPool implements AgentStreamDialer {
  private readonly clients = new Map<string, { address: string; client: AgentStreamServiceClient }>();
  private readonly logger: Logger;
  private closed = false;

  constructor(opts: { logger?: Logger } = {}) {
    this.logger = (opts.logger ?? silentLogger()).child({ component: 'agent-streams' });
  }

  open(node: string, address: string, method: AgentStreamMethod): AgentStream {
    if (this.closed) throw new UnavailableError(`failed to reach the agent of node "${node}": the controller is stopping`);
    if (address === '') throw new UnavailableError(`failed to reach the agent of node "${node}": the node has no address`);
    let have = this.clients.get(node);
    if (have && have.address !== address) {
      have.client.close();
      this.logger.info('agent address changed', { node, address, previous: have.address });
      have = undefined;
    }
    if (!have) {
      have = {
        address,
        client: new AgentStreamServiceClient(address, grpc.credentials.createInsecure(), { 'grpc.keepalive_time_ms': 10000 }),
      };
      this.clients.set(node, have);
    }
    return method === 'attach' ? have.client.attach() : have.client.exec();
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.client.close();
    this.clients.clear();
  }
}
