/**
 * WorkloadService: apply (with a dry-run preview), read, delete, scale,
 * history and watch workloads; rollout status, undo and restart.
 */
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, autoscaleSpecProblems, validateWorkloadFile, type Logger } from '../../lib/index.js';
import type {
  ApplyRequest, ApplyResponse, ApplyResult, AutoscaleRequest, DeleteWorkloadsRequest, DeleteWorkloadsResponse, GetWorkloadRequest, HistoryRequest, HistoryResponse,
  ListWorkloadsRequest, ListWorkloadsResponse, RestartRequest, RolloutStatusRequest, RolloutStatusResponse, ScaleRequest, UndoRequest, UndoResponse,
  WatchWorkloadsRequest, WorkloadEvent, WorkloadServiceServer,
} from '../../proto/gen/berth/v1/controller.js';
import type { AutoscaleSpec, Workload, WorkloadSpec } from '../../proto/gen/berth/v1/types.js';
import type { Membership, ObservedState } from '../nodes/index.js';
import {
  containerSpecFor, previewApply, reconcileNodes, rolloutProgress, templateKey, type ApplyPreviewView, type ObservedNode, type ReconcileNode,
} from '../reconcile/index.js';
import { canonicalSpec, type ContainerRecordStore, type NodeStore, type WorkloadDocument, type WorkloadStore } from '../store/index.js';
import { serverStream, unary } from './call.js';
import { checkPublishedPorts } from './mesh.js';
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
  /**
   * The cluster as the reconciler sees it (records, reports, nodes): RolloutStatus
   * and the dry-run preview of Apply need it; without it RolloutStatus fails with
   * FAILED_PRECONDITION and previews carry only the spec change.
   */
  cluster?: {
    records: Pick<ContainerRecordStore, 'listContainerRecords' | 'getWorkloadStatus'> & Pick<NodeStore, 'listDrainingNodes'>;
    observed: Pick<ObservedState, 'synced' | 'containers'>;
    membership: Pick<Membership, 'list' | 'listeningSinceUnixMs'>;
  };
}

/** The cluster snapshot decide() takes: records (of one workload when named), nodes with their conditions, each node's reported containers. */
async function clusterView(cluster: NonNullable<WorkloadServiceDeps['cluster']>, signal: AbortSignal, workload?: string): Promise<{ records: Awaited<ReturnType<ContainerRecordStore['listContainerRecords']>>; nodes: ReconcileNode[]; observed: ObservedNode[] }> {
  const [list, draining, records] = await Promise.all([
    cluster.membership.list({ signal }),
    cluster.records.listDrainingNodes({ signal }),
    cluster.records.listContainerRecords(workload === undefined ? {} : { workload }, { signal }),
  ]);
  const nodes = reconcileNodes(list, Date.now() - cluster.membership.listeningSinceUnixMs, new Set(draining));
  const observed = nodes.map((n) => ({ node: n.name, synced: cluster.observed.synced(n.name), containers: cluster.observed.containers(n.name) }));
  return { records, nodes, observed };
}

function revisionList(revisions: readonly { revision: number }[]): string {
  return revisions.length === 0 ? 'none' : revisions.map((r) => String(r.revision)).join(', ');
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
      const stored = new Map((await store.listWorkloads(undefined, { signal })).map((w) => [w.metadata?.name ?? '', w]));
      const docs: WorkloadDocument[] = validated.map((v) => {
        // A workload file never names restarted_unix_ms: keep the one `rollout restart` set, or
        // applying the same file again would restart every replica once more.
        const restarted = stored.get(v.metadata.name)?.spec?.restartedUnixMs;
        return { name: v.metadata.name, labels: { ...v.metadata.labels }, spec: restarted ? { ...v.spec, restartedUnixMs: restarted } : v.spec };
      });
      // A published port is open on every node for one workload: a clash refuses the whole apply.
      checkPublishedPorts(docs, stored, source ? { source } : {});
      const outcomes = await store.applyWorkloads(docs, { dryRun: req.dryRun, signal });
      if (!req.dryRun) {
        for (const o of outcomes) {
          if (o.action !== 'unchanged') logger.info('workload applied', { workload: o.name, action: o.action, revision: o.revision });
        }
        return { results: outcomes.map((o) => ({ name: o.name, action: o.action, revision: o.revision })) };
      }
      // Dry run: what the leader's next pass would do if the apply were made now.
      let previews = new Map<string, ApplyPreviewView>();
      if (deps.cluster) {
        const view = await clusterView(deps.cluster, signal);
        const after = new Map(stored);
        for (const o of outcomes) after.set(o.name, o.workload);
        previews = previewApply({
          workloads: [...after.values()], applied: outcomes.map((o) => o.name), ...view, evalId: `dry-run/${Date.now()}`, now: Date.now(),
        });
      }
      return {
        results: outcomes.map((o): ApplyResult => {
          const p = previews.get(o.name);
          const previous = stored.get(o.name)?.spec;
          return {
            name: o.name, action: o.action, revision: o.revision,
            preview: {
              ...(previous ? { previous } : {}), ...(o.workload.spec ? { spec: o.workload.spec } : {}),
              place: p?.place ?? [], remove: p?.remove ?? [], pending: p?.pending ?? 0, pendingReason: p?.pendingReason ?? '', replace: p?.replace ?? 0,
            },
          };
        }),
      };
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

    rolloutStatus: unary(logger, 'RolloutStatus', async (req: RolloutStatusRequest, { signal }): Promise<RolloutStatusResponse> => {
      const name = checkName('name', req.name);
      const cluster = deps.cluster;
      if (!cluster) throw new FailedPreconditionError(`failed to read the rollout status of "${name}": this controller does not serve container records`);
      const workload = await store.getWorkload(name, { signal });
      const [history, view, status] = await Promise.all([
        store.workloadHistory(name, { signal }), clusterView(cluster, signal, name), cluster.records.getWorkloadStatus(name, { signal }),
      ]);
      return rolloutProgress({ workload, history, ...view, ...(status ? { status } : {}) });
    }),

    undo: unary(logger, 'Undo', async (req: UndoRequest, { signal }): Promise<UndoResponse> => {
      const name = checkName('name', req.name);
      if (!Number.isSafeInteger(req.toRevision) || req.toRevision < 0) {
        throw new InvalidArgumentError(`to_revision: expected a revision number (or 0 for the previous one), got ${req.toRevision}`, { field: 'to_revision' });
      }
      const w = await store.getWorkload(name, { signal });
      const current = w.status?.revision ?? 0;
      const history = await store.workloadHistory(name, { signal });
      const currentKey = templateKey(containerSpecFor(name, w.spec));
      let target = history.find((h) => h.revision === req.toRevision);
      if (req.toRevision === 0) {
        target = [...history].reverse().find((h) => h.revision < current && templateKey(containerSpecFor(name, h.spec)) !== currentKey);
        if (!target) {
          throw new FailedPreconditionError(`failed to undo "${name}": no earlier revision with a different spec is kept (revisions kept: ${revisionList(history)}); nothing to go back to`);
        }
      } else if (req.toRevision === current) {
        throw new FailedPreconditionError(`failed to undo "${name}" to revision ${req.toRevision}: it is the current revision; expected an earlier one (see berth rollout history ${name})`);
      } else if (!target) {
        throw new NotFoundError('revision', `${name}/${req.toRevision}`, {
          message: `failed to undo "${name}" to revision ${req.toRevision}: no such revision; expected one of the revisions kept: ${revisionList(history)}`,
        });
      }
      if (!target.spec || !w.spec) throw new FailedPreconditionError(`failed to undo "${name}" to revision ${target.revision}: the revision record has no spec`);
      // The replica count is not rolled back (as with automatic rollbacks): scaling is a separate decision.
      const spec = { ...target.spec, replicas: w.spec.replicas };
      if (canonicalSpec(spec) === canonicalSpec(w.spec)) {
        throw new FailedPreconditionError(`failed to undo "${name}" to revision ${target.revision}: its spec is the current one (revision ${current}) apart from replicas; nothing to undo`);
      }
      // The old revision's published ports may belong to another workload by now.
      checkPublishedPorts([{ name, spec }], new Map((await store.listWorkloads(undefined, { signal })).map((x) => [x.metadata?.name ?? '', x])));
      const [outcome] = await store.applyWorkloads([{ name, labels: { ...(w.metadata?.labels ?? {}) }, spec }], { signal, cause: `undo to ${target.revision}` });
      if (!outcome) throw new FailedPreconditionError(`failed to undo "${name}": the store returned no outcome`);
      logger.info('workload rolled back', { workload: name, toRevision: target.revision, revision: outcome.revision });
      return { workload: outcome.workload, toRevision: target.revision };
    }),

    restart: unary(logger, 'Restart', async (req: RestartRequest, { signal }): Promise<Workload> => {
      const name = checkName('name', req.name);
      const w = await store.getWorkload(name, { signal });
      if (!w.spec) throw new FailedPreconditionError(`failed to restart "${name}": the workload has no spec`);
      // Strictly later than the last restart, so two restarts in one millisecond still differ.
      const restartedUnixMs = Math.max(Date.now(), (w.spec.restartedUnixMs ?? 0) + 1);
      const [outcome] = await store.applyWorkloads([{ name, labels: { ...(w.metadata?.labels ?? {}) }, spec: { ...w.spec, restartedUnixMs } }], { signal, cause: 'restart' });
      if (!outcome) throw new FailedPreconditionError(`failed to restart "${name}": the store returned no outcome`);
      logger.info('workload restarted', { workload: name, revision: outcome.revision });
      return outcome.workload;
    }),

    autoscale: unary(logger, 'Autoscale', async (req: AutoscaleRequest, { signal }): Promise<Workload> => {
      const name = checkName('name', req.name);
      const w = await store.getWorkload(name, { signal });
      if (!w.spec) throw new FailedPreconditionError(`failed to autoscale "${name}": the workload has no spec`);
      let spec: WorkloadSpec;
      if (req.off) {
        if (!w.spec.autoscale) throw new FailedPreconditionError(`failed to turn off autoscaling of "${name}": it has no autoscale policy`);
        spec = { ...w.spec, autoscale: undefined };
      } else {
        if (!req.autoscale) throw new InvalidArgumentError('autoscale: expected a policy (min, max, metric, target) or off', { field: 'autoscale' });
        const a: AutoscaleSpec = { ...req.autoscale };
        const problems = autoscaleSpecProblems(a, w.spec);
        if (problems.length > 0) {
          const [first] = problems;
          throw new InvalidArgumentError(`failed to autoscale "${name}": ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`, { field: first?.field ?? 'autoscale' });
        }
        spec = { ...w.spec, autoscale: a, replicas: Math.min(Math.max(w.spec.replicas, a.min, 1), a.max) };
      }
      const [outcome] = await store.applyWorkloads([{ name, labels: { ...(w.metadata?.labels ?? {}) }, spec }], { signal, cause: 'autoscale' });
      if (!outcome) throw new FailedPreconditionError(`failed to autoscale "${name}": the store returned no outcome`);
      logger.info('workload autoscale policy set', { workload: name, off: req.off, revision: outcome.revision });
      return outcome.workload;
    }),

    watch: serverStream(logger, 'Watch', deps.stopping, async (_req: WatchWorkloadsRequest, send: (e: WorkloadEvent) => void, { signal }) => {
      for await (const change of store.watchWorkloads({ signal })) {
        send({ type: change.type, workload: change.workload });
      }
    }),
  };
}
