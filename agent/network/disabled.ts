/**
 * The container network of an agent without container networking
 * (`berth agent --network none`): "cluster" and "none" containers get a new,
 * empty network namespace (made by the runtime), "host" containers share the
 * node's, and published ports are refused, since nothing would forward them.
 */
import { FailedPreconditionError, parseNetworkMode } from '../../lib/index.js';
import type { ContainerSpec } from '../../proto/gen/berth/v1/types.js';
import { publishedPorts, type SetupResult } from './network.js';

export class DisabledNetwork {
  /** `hostNetns`: path of the node's network namespace (default this process's). */
  constructor(private readonly hostNetns = `/proc/${process.pid}/ns/net`) {}

  async setup(_id: string, spec: ContainerSpec): Promise<SetupResult> {
    const mode = parseNetworkMode(spec.network, 'spec.network');
    if (publishedPorts(spec).length > 0) {
      throw new FailedPreconditionError('spec.ports: publishing host ports needs container networking on the node (berth agent --network cni); this agent runs with --network none');
    }
    // An empty path: the runtime makes a new, empty namespace.
    return { netnsPath: mode === 'host' ? this.hostNetns : '', ipAddress: '' };
  }

  async teardown(): Promise<void> {
    // Nothing was made.
  }
}
