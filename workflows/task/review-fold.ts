/**
 * A writer's later reviews while the agent works on a round. Their first review waits in the forge queue for the
 * next wait for review; later ones (a lone line comment is a review of its own) fold into it, up to
 * {@link MAX_FOLDED_REVIEWS}, and are read back with it as one request for changes. The review after those is taken
 * only to tell the writer, once, that it and later ones are not passed on; the rest are refused unread, so a
 * stream of reviews cannot grow the task's history.
 *
 * The reply is written by a loop beside the main line (which may be running the agent), like the issue mirror.
 */
import { ActivityFailure, ApplicationFailure, condition, patched } from '@temporalio/workflow';
import { foldFullReply, MAX_FOLDED_REVIEWS, type TaskForgeEvent, type TaskReviewEvent } from '../../domain/forge';
import { describeFailure, forgeActs } from './proxies';
import type { TaskRun } from './state';
import { trace } from './visibility';

/** Patch before which a writer's later review while their first waited was refused, and nothing was folded or replied. */
export const REVIEW_FOLD_PATCH = 'forge-review-fold';

/** What a task keeps of folded reviews: the folds by the review they wait with, and the replies it owes. Plain JSON. */
export interface FoldState {
  folds: ReviewFold[];
  /** Writers to tell their fold is full, oldest first (one per fold). */
  replies: { reviewer: string; review_id: number }[];
}

/** A writer's later reviews folded into their review `into`, waiting in the forge queue; `full` once the writer was owed the reply. */
export interface ReviewFold {
  into: number;
  reviews: TaskReviewEvent[];
  full?: boolean;
}

/** The review by `reviewer` waiting in the forge queue (not yet being read), if any. */
export function waitingReview(t: TaskRun, reviewer: string): TaskReviewEvent | undefined {
  const who = reviewer.toLowerCase();
  return (t.s.forge_queue ?? []).find((q): q is TaskReviewEvent => (q.kind === 'changes_requested' || q.kind === 'review_commented') && q.reviewer.toLowerCase() === who);
}

/** Refuses a later review of a writer whose fold is full: they were told once, and it is not read. */
export function validateFold(t: TaskRun, waiting: TaskReviewEvent, e: TaskForgeEvent & { reviewer: string }): void {
  const fold = t.s.review_folds?.folds.find((f) => f.into === waiting.review_id);
  if (fold?.full === true) {
    throw ApplicationFailure.create({
      type: 'ReviewRefused',
      message: `${MAX_FOLDED_REVIEWS} later reviews by ${e.reviewer} already wait with their review ${waiting.review_id} for the next round; they were told the rest is not passed on`,
      nonRetryable: true,
    });
  }
}

/** Folds validated review `e` into the writer's waiting review, or, with the fold full, owes them the one reply. */
export function foldReview(t: TaskRun, waiting: TaskReviewEvent, e: TaskReviewEvent): void {
  const state = (t.s.review_folds ??= { folds: [], replies: [] });
  let fold = state.folds.find((f) => f.into === waiting.review_id);
  if (fold === undefined) {
    fold = { into: waiting.review_id, reviews: [] };
    state.folds.push(fold);
  }
  if (fold.reviews.length < MAX_FOLDED_REVIEWS) {
    fold.reviews.push(e);
    trace(t, 'forge_event', `review ${e.review_id} by ${e.reviewer} on #${e.number} folded into their review ${waiting.review_id}, waiting for the next round`, { delivery_id: e.delivery_id, review_id: e.review_id, into: waiting.review_id }, `github:${e.reviewer}`);
    return;
  }
  fold.full = true;
  state.replies.push({ reviewer: e.reviewer, review_id: e.review_id });
  trace(t, 'note', `review ${e.review_id} by ${e.reviewer} not passed on: ${MAX_FOLDED_REVIEWS} later reviews already wait with their review ${waiting.review_id}; they are told`, { delivery_id: e.delivery_id, review_id: e.review_id, into: waiting.review_id }, `github:${e.reviewer}`);
}

/** Takes the reviews folded into `into` as it is read (oldest first), and whether its writer was owed the fold-full reply. */
export function takeFold(t: TaskRun, into: number): { later: TaskReviewEvent[]; told: boolean } {
  const state = t.s.review_folds;
  const fold = state?.folds.find((f) => f.into === into);
  if (state === undefined || fold === undefined) return { later: [], told: false };
  state.folds = state.folds.filter((f) => f !== fold);
  return { later: fold.reviews, told: fold.full === true };
}

/** Writes the replies owed to writers whose fold is full, beside the main line, until the run ends. */
export async function foldReplies(t: TaskRun): Promise<void> {
  for (;;) {
    await condition(() => t.finished || (t.s.review_folds?.replies.length ?? 0) > 0);
    if (t.finished) return;
    const write = reply(t, t.s.review_folds!.replies[0]!);
    t.replying = write;
    try {
      await write;
    } finally {
      t.replying = null;
    }
    t.s.review_folds!.replies.shift();
  }
}

/** Waits for a reply in flight, if any (before the run ends or continues as new: the next run would write it again). */
export async function foldRepliesSettled(t: TaskRun): Promise<void> {
  while (t.replying !== null) await t.replying.catch(() => undefined);
}

async function reply(t: TaskRun, owed: { reviewer: string; review_id: number }): Promise<void> {
  const pr = t.s.pr!;
  // Only histories that folded owe replies; the patch marks the first write.
  if (!patched(REVIEW_FOLD_PATCH)) return;
  try {
    await forgeActs.commentOnPullRequest({ repo: pr.repo, number: pr.number, body: foldFullReply(owed.reviewer) });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `could not reply on #${pr.number} to ${owed.reviewer}: ${describeFailure(err)}`, { review_id: owed.review_id });
  }
}
