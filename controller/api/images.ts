/**
 * ImageService: images on the nodes. Each call is fanned out to the agents of
 * the chosen node, or of every Ready node, through the agent pool; the
 * controller keeps no image state of its own.
 */
import { InvalidArgumentError, NotFoundError, FailedPreconditionError, messageOf, normalizeImageReference, type Logger } from '../../lib/index.js';
import type { ImageListRequest, ImageListResponse, ImagePullRequest, ImageServiceServer } from '../../proto/gen/berth/v1/controller.js';
import { NodeState, type ImageRecord, type Node, type PullProgress } from '../../proto/gen/berth/v1/types.js';
import type { AgentDialer } from '../agents/index.js';
import type { Membership } from '../nodes/index.js';
import { serverStream, unary } from './call.js';
import { checkName } from './validate.js';

export interface ImageServiceDeps {
  membership: Pick<Membership, 'list'>;
  agents: AgentDialer;
  defaultRegistry?: string;
  logger: Logger;
  stopping: AbortSignal;
}

/** The nodes a call addresses: the named one (which must be Ready), or every Ready node. */
async function targetNodes(deps: ImageServiceDeps, node: string, signal: AbortSignal): Promise<Node[]> {
  const nodes = await deps.membership.list({ signal });
  if (node !== '') {
    const name = checkName('node', node, 'node');
    const n = nodes.find((x) => x.spec?.name === name);
    if (!n) throw new NotFoundError('node', name);
    if (n.status?.state !== NodeState.NODE_STATE_READY) {
      throw new FailedPreconditionError(`failed to reach node "${name}": it is not Ready${n.status?.reason ? ` (${n.status.reason})` : ''}`);
    }
    return [n];
  }
  const ready = nodes.filter((n) => n.status?.state === NodeState.NODE_STATE_READY);
  if (ready.length === 0) throw new FailedPreconditionError('no Ready node to ask; expected at least one node with a running agent (see `berth get nodes`)');
  return ready;
}

export function imageService(deps: ImageServiceDeps): ImageServiceServer {
  const logger = deps.logger.child({ service: 'ImageService' });
  return {
    pull: serverStream(logger, 'ImagePull', deps.stopping, async (req: ImagePullRequest, send: (p: PullProgress) => void, { signal }) => {
      if (typeof req.reference !== 'string' || req.reference === '') {
        throw new InvalidArgumentError('reference: expected an image reference such as "busybox" or "registry.example.com/team/web:1.0", got nothing', { field: 'reference' });
      }
      let reference: string;
      try {
        reference = normalizeImageReference(req.reference, deps.defaultRegistry
          ? { field: 'reference', defaultRegistry: deps.defaultRegistry } : { field: 'reference' });
      } catch (err) {
        throw new InvalidArgumentError(`reference: ${messageOf(err)}`, { field: 'reference', cause: err });
      }
      const nodes = await targetNodes(deps, req.node, signal);
      await Promise.all(nodes.map(async (n) => {
        const node = n.spec?.name ?? '';
        let finished = false;
        try {
          const agent = deps.agents.agent(node, n.spec?.address ?? '');
          for await (const p of agent.pullImage({ reference }, { signal })) {
            finished ||= p.finished;
            send({ ...p, node, reference });
          }
          if (!finished) throw new Error('the agent ended the pull without a result');
        } catch (err) {
          if (signal.aborted || finished) return;
          logger.warn('pull failed on a node', { nodeId: node, reference, error: messageOf(err) });
          send({ node, reference, layers: [], finished: true, error: messageOf(err), digest: '' });
        }
      }));
    }),

    list: unary(logger, 'ImageList', async (req: ImageListRequest, { signal }): Promise<ImageListResponse> => {
      const nodes = await targetNodes(deps, req.node, signal);
      const images: ImageRecord[] = [];
      const unreachable: string[] = [];
      await Promise.all(nodes.map(async (n) => {
        const node = n.spec?.name ?? '';
        try {
          const list = await deps.agents.agent(node, n.spec?.address ?? '').listImages({ signal });
          for (const img of list) images.push({ ...img, node });
        } catch (err) {
          unreachable.push(`${node}: ${messageOf(err)}`);
        }
      }));
      images.sort((a, b) => a.repository.localeCompare(b.repository) || a.tag.localeCompare(b.tag) || a.node.localeCompare(b.node));
      unreachable.sort();
      return { images, unreachable };
    }),
  };
}
