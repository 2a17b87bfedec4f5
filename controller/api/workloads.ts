/** WorkloadService: apply, read, delete, scale, history and watch workloads. */
import { InvalidArgumentError, validateWorkloadFile, type Logger } from '../../lib/index.js';
import type {
  ApplyRequest, ApplyResponse, DeleteWorkloadsRequest, DeleteWorkloadsResponse, GetWorkloadRequest, HistoryRequest, HistoryResponse,
  ListWorkloadsRequest, ListWorkloadsResponse, ScaleRequest, WatchWorkloadsRequest, WorkloadEvent, WorkloadServiceServer,
} from '../../proto/gen/berth/v1/controller.js';
import type { Workload } from '../../proto/gen/berth/v1/types.js';
import type { ContainerRecordStore, WorkloadDocument, WorkloadStore } from '../store/index.js';
import { serverStream, unary } from './call.js';
import { MAX_MANIFEST_BYTES, checkLabels, checkName, checkNames, checkText } from './validate.js';

export interface WorkloadServiceDeps {
  store: WorkloadStore;
  /** host:port for images without a registry host. */
  defaultRegistry?: string;
  logger: Logger;
  /** Where the reconciler writes workload status; merged into Get and List when given. */
  statuses?: Pick<ContainerRecordStore, 'getWorkloadStatus'>;
  /** Fires when the server stops; ends open watches. */
  stopping: AbortSignal;
}

export function workloadService(deps: WorkloadServiceDeps): WorkloadServiceServer {
  const { store, logger } = deps;
  /** The workload with the reconciler's status (desired, running, ready, pending, conditions); the revision stays the workload's own. */
  const withStatus = async (w: Workload, signal: AbortSignal): Promise<Workload> => {
    const name = w.metadata?.name ?? '';
    const s = deps.statuses ? await deps.statuses.getWorkloadStatus(name, { signal }) : undefined;
    if (!s || !w.status) return w;
    return { ...w, status: { ...s, revision: w.status.revision, desired: w.spec?.replicas ?? s.desired } };
  };
  return {
    apply: unary(logger, 'Apply', async (req: ApplyRequest, { signal }): Promise<ApplyResponse> => {
      const source = checkText('source', req.source, 1024);
      const bytes = Buffer.byteLength(req.manifest, 'utf8');
      if (bytes > MAX_MANIFEST_BYTES) {
        throw new InvalidArgumentError(`manifest: expected at most ${MAX_MANIFEST_BYTES} bytes, got ${bytes}`, { field: 'manifest' });
      }
      const validated = validateWorkloadFile(req.manifest, {
        ...(source ? { source } : {}),
        ...(deps.defaultRegistry ? { defaultRegistry: deps.defaultRegistry } : {}),
      });
      if (validated.length === 0) {
        throw new InvalidArgumentError(`manifest: expected at least one workload document${source ? ` in "${source}"` : ''}, got none`, { field: 'manifest' });
      }
      const docs: WorkloadDocument[] = validated.map((v) => ({ name: v.metadata.name, labels: { ...v.metadata.labels }, spec: v.spec }));
      const outcomes = await store.applyWorkloads(docs, { dryRun: req.dryRun, signal });
      if (!req.dryRun) {
        for (const o of outcomes) {
          if (o.action !== 'unchanged') logger.info('workload applied', { workload: o.name, action: o.action, revision: o.revision });
        }
      }
      return { results: outcomes.map((o) => ({ name: o.name, action: o.action, revision: o.revision })) };
    }),

    get: unary(logger, 'Get', async (req: GetWorkloadRequest, { signal }): Promise<Workload> => {
      return withStatus(await store.getWorkload(checkName('name', req.name), { signal }), signal);
    }),

    list: unary(logger, 'List', async (req: ListWorkloadsRequest, { signal }): Promise<ListWorkloadsResponse> => {
      const selector = checkLabels('selector', req.selector);
      const workloads = await store.listWorkloads(selector, { signal });
      return { workloads: await Promise.all(workloads.map((w) => withStatus(w, signal))) };
    }),

    delete: unary(logger, 'Delete', async (req: DeleteWorkloadsRequest, { signal }): Promise<DeleteWorkloadsResponse> => {
      const names = checkNames('names', req.names);
      const deleted = await store.deleteWorkloads(names, { ignoreNotFound: req.ignoreNotFound, signal });
      for (const name of deleted) logger.info('workload deleted', { workload: name });
      return { deleted };
    }),

    scale: unary(logger, 'Scale', async (req: ScaleRequest, { signal }): Promise<Workload> => {
      const name = checkName('name', req.name);
      const w = await store.scaleWorkload(name, req.replicas, { signal });
      logger.info('workload scaled', { workload: name, replicas: req.replicas, revision: w.status?.revision });
      return w;
    }),

    history: unary(logger, 'History', async (req: HistoryRequest, { signal }): Promise<HistoryResponse> => {
      return { revisions: await store.workloadHistory(checkName('name', req.name), { signal }) };
    }),

    watch: serverStream(logger, 'Watch', deps.stopping, async (_req: WatchWorkloadsRequest, send: (e: WorkloadEvent) => void, { signal }) => {
      for await (const change of store.watchWorkloads({ signal })) {
        send({ type: change.type, workload: change.workload });
      }
    }),
  };
}
