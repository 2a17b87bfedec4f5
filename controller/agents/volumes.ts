/**
 * The controller's clients to agents' AgentVolumeService (proto/berth/v1/volumes.proto):
 * one gRPC channel per node, made on first use and replaced when the node's
 * address changes. Every call has a deadline and takes `{ signal }`; errors
 * are AgentCallError (the agent's status kept, the node named).
 */
import * as grpc from '@grpc/grpc-js';
import { UnavailableError } from '../../lib/index.js';
import {
  AgentVolumeServiceClient,
  type AgentCreateVolumeRequest, type AgentRemoveVolumeResponse, type ListVolumesResponse, type Volume,
} from '../../proto/gen/berth/v1/volumes.js';
import { agentUnary, type CallOptions, type Unary } from './pool.js';

/** What the controller can ask one agent about its volumes. */
export interface AgentVolumeClient {
  readonly node: string;
  /** Creates the volume's directory (an existing one is returned). */
  createVolume(req: AgentCreateVolumeRequest, opts?: CallOptions): Promise<Volume>;
  listVolumes(opts?: CallOptions): Promise<Volume[]>;
  /** FAILED_PRECONDITION while a container on the node mounts it; false when it was not there. */
  removeVolume(name: string, opts?: CallOptions): Promise<boolean>;
}

export interface AgentVolumeDialer {
  volumes(node: string, address: string): AgentVolumeClient;
}

class VolumeAgent implements AgentVolumeClient {
  constructor(readonly node: string, readonly address: string, readonly client: AgentVolumeServiceClient, private readonly timeoutMs: number) {}

  private unary<Req, Res>(method: string, fn: Unary<Req, Res>, req: Req, opts?: CallOptions): Promise<Res> {
    return agentUnary(this, this.client, method, fn, req, this.timeoutMs, opts);
  }

  createVolume(req: AgentCreateVolumeRequest, opts?: CallOptions): Promise<Volume> {
    return this.unary('CreateVolume', this.client.createVolume as Unary<AgentCreateVolumeRequest, Volume>, req, opts);
  }

  async listVolumes(opts?: CallOptions): Promise<Volume[]> {
    return (await this.unary('ListVolumes', this.client.listVolumes as Unary<object, ListVolumesResponse>, {}, opts)).volumes;
  }

  async removeVolume(name: string, opts?: CallOptions): Promise<boolean> {
    return (await this.unary('RemoveVolume', this.client.removeVolume as Unary<{ name: string }, AgentRemoveVolumeResponse>, { name }, opts)).removed;
  }
}

export class AgentVolumePool implements AgentVolumeDialer {
  private readonly agents = new Map<string, VolumeAgent>();
  private closed = false;

  /** `timeoutMs`: deadline of each call (removing a big volume deletes many files); default 60000. */
  constructor(private readonly timeoutMs = 60_000) {}

  volumes(node: string, address: string): AgentVolumeClient {
    if (this.closed) throw new UnavailableError(`failed to reach the agent of node "${node}": the pool is closed`);
    const have = this.agents.get(node);
    if (have && have.address === address) return have;
    have?.client.close();
    const a = new VolumeAgent(node, address, new AgentVolumeServiceClient(address, grpc.credentials.createInsecure()), this.timeoutMs);
    this.agents.set(node, a);
    return a;
  }

  close(): void {
    this.closed = true;
    for (const a of this.agents.values()) a.client.close();
    this.agents.clear();
  }
}
