/**
 * ImageService: images on the nodes. Each call is fanned out to the agents of
 * the chosen node, or of every Ready node, through the agent pool; the
 * controller keeps no image state of its own.
 */
import { BerthError, ErrorCode, InvalidArgumentError, NotFoundError, FailedPreconditionError, UnavailableError, messageOf, normalizeImageReference, type Logger } from '../../lib/index.js';
import type {
  ImageListRequest, ImageListResponse, ImagePruneRequest, ImagePruneResponse, ImagePullRequest, ImageRemoveRequest, ImageRemoveResponse,
  ImageSearchRequest, ImageSearchResponse, ImageServiceServer,
} from '../../proto/gen/berth/v1/controller.js';
import { NodeState, type ImageRecord, type ImageRemoval, type Node, type PullProgress } from '../../proto/gen/berth/v1/types.js';
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

const MAX_REFERENCES = 100;
/** A manifest digest, or a prefix of at least 12 hex digits as `berth images` shows it: passed to the agents as is. */
const DIGEST_LIKE = /^(?:sha256:)?[a-f0-9]{12,64}$/;
const REGISTRY_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

function normalizeReference(deps: ImageServiceDeps, ref: string, field: string): string {
  if (typeof ref !== 'string' || ref === '') {
    throw new InvalidArgumentError(`${field}: expected an image reference such as "busybox" or "registry.example.com/team/web:1.0", got nothing`, { field });
  }
  try {
    return normalizeImageReference(ref, deps.defaultRegistry ? { field, defaultRegistry: deps.defaultRegistry } : { field });
  } catch (err) {
    throw new InvalidArgumentError(`${field}: ${messageOf(err)}`, { field, cause: err });
  }
}

/** The references of a Remove request as the agents get them (short names resolved, digests as given). */
function removeReferences(deps: ImageServiceDeps, refs: string[]): string[] {
  if (refs.length === 0) throw new InvalidArgumentError('references: expected at least one image reference or digest, got none', { field: 'references' });
  if (refs.length > MAX_REFERENCES) throw new InvalidArgumentError(`references: expected at most ${MAX_REFERENCES} images, got ${refs.length}`, { field: 'references' });
  const out = refs.map((r) => {
    if (typeof r === 'string' && DIGEST_LIKE.test(r)) return r;
    if (typeof r === 'string' && r.startsWith('sha256:')) {
      throw new InvalidArgumentError(`references: invalid image digest "${r.slice(0, 80)}": expected "sha256:" and 12 to 64 lowercase hex digits`, { field: 'references' });
    }
    return normalizeReference(deps, r, 'references');
  });
  return [...new Set(out)];
}

/** Runs `fn` on every node at once; returns each node's result or error. */
async function onEach<T>(nodes: Node[], fn: (node: string, address: string) => Promise<T>): Promise<{ node: string; value?: T; error?: unknown }[]> {
  return Promise.all(nodes.map(async (n) => {
    const node = n.spec?.name ?? '';
    try {
      return { node, value: await fn(node, n.spec?.address ?? '') };
    } catch (error) {
      return { node, error };
    }
  }));
}

function removalError(node: string, err: unknown): ImageRemoval {
  return { node, images: [], missing: [], blobsDeleted: 0, snapshotsDeleted: 0, bytesFreed: 0, error: messageOf(err) };
}

export function imageService(deps: ImageServiceDeps): ImageServiceServer {
  const logger = deps.logger.child({ service: 'ImageService' });
  return {
    pull: serverStream(logger, 'ImagePull', deps.stopping, async (req: ImagePullRequest, send: (p: PullProgress) => void, { signal }) => {
      const reference = normalizeReference(deps, req.reference, 'reference');
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

    // Two phases so that nothing is half-applied: a dry run on every target
    // node (which checks use and finds the images), then the removal on the
    // nodes that have them. A container started between the phases can still
    // lose its image record; its layers stay until it is removed.
    remove: unary(logger, 'ImageRemove', async (req: ImageRemoveRequest, { signal }): Promise<ImageRemoveResponse> => {
      const references = removeReferences(deps, req.references);
      const nodes = await targetNodes(deps, req.node, signal);
      const checks = await onEach(nodes, (node, address) => deps.agents.agent(node, address).removeImages({ references, force: req.force, dryRun: true }, { signal }));
      const failed = checks.filter((c) => c.error !== undefined).sort((a, b) => a.node.localeCompare(b.node));
      const first = failed[0];
      if (first) {
        const what = failed.map((f) => `node "${f.node}": ${messageOf(f.error)}`).join('; ');
        const code = first.error instanceof BerthError ? first.error.code : ErrorCode.Unavailable;
        if (code === ErrorCode.FailedPrecondition || code === ErrorCode.InvalidArgument) {
          throw new BerthError(code, `${what}; nothing was removed`, { cause: first.error });
        }
        throw new UnavailableError(`failed to remove images: could not check ${failed.length === 1 ? 'a node' : 'nodes'} (${what}); nothing was removed`, { cause: first.error });
      }
      for (const ref of references) {
        if (checks.every((c) => c.value?.missing.includes(ref))) {
          const where = req.node ? `on node "${req.node}"` : `on any Ready node (${nodes.length} asked)`;
          throw new NotFoundError('image', ref, { message: `image "${ref}" not found ${where}; see \`berth images\`; nothing was removed` });
        }
      }
      const holders = checks.filter((c) => (c.value?.images.length ?? 0) > 0).map((c) => nodes.find((n) => n.spec?.name === c.node)).filter((n): n is Node => n !== undefined);
      const done = await onEach(holders, (node, address) => deps.agents.agent(node, address).removeImages({ references, force: req.force, dryRun: false }, { signal }));
      const out = done.map((d) => (d.value ? { ...d.value, node: d.node } : removalError(d.node, d.error)));
      for (const d of done) if (d.error !== undefined) logger.warn('image removal failed on a node after its check passed', { nodeId: d.node, error: messageOf(d.error) });
      return { nodes: out.sort((a, b) => a.node.localeCompare(b.node)) };
    }),

    prune: unary(logger, 'ImagePrune', async (req: ImagePruneRequest, { signal }): Promise<ImagePruneResponse> => {
      const nodes = await targetNodes(deps, req.node, signal);
      const done = await onEach(nodes, (node, address) => deps.agents.agent(node, address).pruneImages({ all: req.all }, { signal }));
      return { nodes: done.map((d) => (d.value ? { ...d.value, node: d.node } : removalError(d.node, d.error))).sort((a, b) => a.node.localeCompare(b.node)) };
    }),

    search: unary(logger, 'ImageSearch', async (req: ImageSearchRequest, { signal }): Promise<ImageSearchResponse> => {
      if (typeof req.term !== 'string' || req.term.length > 255) {
        throw new InvalidArgumentError('term: expected a search term of at most 255 characters', { field: 'term' });
      }
      const registry = req.registry || deps.defaultRegistry || '';
      if (registry === '') {
        throw new InvalidArgumentError('registry: expected a registry host such as "registry.example.com" (no default registry is configured on the controller)', { field: 'registry' });
      }
      if (!REGISTRY_HOST.test(registry)) {
        throw new InvalidArgumentError(`registry: expected a registry host such as "registry.example.com" or "127.0.0.1:5000", got "${registry.slice(0, 100)}"`, { field: 'registry' });
      }
      const limit = req.limit === 0 ? 25 : req.limit;
      if (limit < 1 || limit > 100) throw new InvalidArgumentError(`limit: expected 1 to 100, got ${req.limit}`, { field: 'limit' });
      // Any Ready agent can ask the registry (they hold the registry credentials); the first by name that answers.
      const nodes = (await targetNodes(deps, '', signal)).sort((a, b) => (a.spec?.name ?? '').localeCompare(b.spec?.name ?? ''));
      let lastErr: unknown;
      for (const n of nodes) {
        const node = n.spec?.name ?? '';
        try {
          return { results: await deps.agents.agent(node, n.spec?.address ?? '').searchImages({ term: req.term, registry, limit }, { signal }), node };
        } catch (err) {
          if (!(err instanceof BerthError) || (err.code !== ErrorCode.Unavailable && err.code !== ErrorCode.DeadlineExceeded)) throw err;
          // This node's agent could not be reached: try the next.
          lastErr = err;
        }
      }
      throw lastErr instanceof Error ? lastErr : new UnavailableError('failed to search: no agent answered');
    }),
  };
}
