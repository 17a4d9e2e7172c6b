/**
 * `GET /v1/tasks/:id/inbox/:item_id/diff`: the diff a `pr_review` or `risky_action` item asks about, read for
 * a reviewer (files, risky lines and why, big files collapsed).
 */
import type { Router } from 'express';
import { taskAccess } from '../auth/guard';
import { annotateDiff, type AnnotatedDiff } from '../../domain/diff-risk';
import type { InboxItem } from '../../domain/task';
import { readArtifact } from '../artifacts';
import type { AppDeps } from '../deps';
import { readTaskView } from '../ended-tasks';
import { NotFoundError } from '../errors';
import { ARTIFACT_NAME } from '../schemas';
import { pathParam, taskRouter } from './params';

/** Item kinds whose detail carries a diff. */
const DIFF_KINDS: readonly string[] = ['pr_review', 'risky_action'];
/** Files with more diff lines than this arrive collapsed. */
const COLLAPSE_LINES = 400;
/** Diffs larger than this are cut (and say so) rather than parsed whole. */
const MAX_DIFF_BYTES = 8 * 1024 * 1024;

/** What the diff route answers. */
export interface ItemDiff extends AnnotatedDiff {
  task_id: string;
  item_id: string;
  /** `artifact`: the full diff from the store; `preview`: only the bounded preview the item carries. */
  source: 'artifact' | 'preview' | 'none';
}

/** The review route: an item's diff, annotated under the task's policy. */
export function reviewRoutes(deps: AppDeps): Router {
  const router = taskRouter();

  router.get('/v1/tasks/:id/inbox/:item_id/diff', taskAccess(deps), async function getItemDiff(req, res) {
    const id = pathParam(req, 'id');
    const itemId = pathParam(req, 'item_id');
    const view = await readTaskView(deps.client, deps.records, id);
    const item = view.items.find((i) => i.item_id === itemId);
    if (!item) throw new NotFoundError('unknown_item', `task ${id} has no item ${itemId}`);
    if (!DIFF_KINDS.includes(item.kind)) throw new NotFoundError('no_diff', `item ${itemId} is a ${item.kind}, which has no diff`);
    const { text, source } = await diffText(deps, id, item);
    const annotated = annotateDiff(text, { protectedPaths: view.policy.protected_paths, collapseLines: COLLAPSE_LINES });
    const body: ItemDiff = { task_id: id, item_id: itemId, source, ...annotated };
    res.set('Cache-Control', 'no-store').json(body);
  });

  return router;
}

/**
 * The item's full diff from the artifact store when its `diff_ref` names an artifact of this same task, else
 * its `diff_preview`. A reference to another task's artifact is ignored: the item never reads across tasks.
 */
async function diffText(deps: AppDeps, taskId: string, item: InboxItem): Promise<{ text: string; source: ItemDiff['source'] }> {
  const name = ownArtifactName(taskId, item.detail['diff_ref']);
  if (name !== null && deps.artifacts !== undefined) {
    const buf = await readArtifact(deps.artifacts, taskId, name).catch((err: unknown) => {
      if (err instanceof NotFoundError) return null;
      throw err;
    });
    if (buf !== null) return { text: buf.subarray(0, MAX_DIFF_BYTES).toString('utf8'), source: 'artifact' };
  }
  const preview = item.detail['diff_preview'];
  return typeof preview === 'string' ? { text: preview, source: 'preview' } : { text: '', source: 'none' };
}

/** The artifact name in `artifact://<taskId>/<name>`, or null for anything else. */
function ownArtifactName(taskId: string, ref: unknown): string | null {
  if (typeof ref !== 'string') return null;
  const prefix = `artifact://${taskId}/`;
  if (!ref.startsWith(prefix)) return null;
  const name = ref.slice(prefix.length);
  return ARTIFACT_NAME.test(name) ? name : null;
}
