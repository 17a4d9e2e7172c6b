/**
 * A writer's later reviews while the agent works on a round. Their first review waits in the forge queue for the
 * next wait for review; later ones (a lone line comment is a review of its own) fold into it, up to
 * {@link MAX_FOLDED_REVIEWS}, and are read back with it as one request for changes. The review after those is
 * taken only to mark the fold full (the writer is told once the round is read); the rest are refused unread, so a
 * stream of reviews cannot grow the task's history.
 *
 * Only reviewers the task has read as allowed to steer it fold: anyone else's first review waits unread like any
 * review, and their later ones are refused, as they were before folding existed.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import { MAX_FOLDED_REVIEWS, type TaskForgeEvent, type TaskReviewEvent } from '../../domain/forge';
import type { TaskRun } from './state';
import { trace } from './visibility';

/** Patch before which a writer's later review while their first waited was refused, and nothing was folded or replied. */
export const REVIEW_FOLD_PATCH = 'forge-review-fold';

/** Reviewers (lower case) a task remembers having read as allowed to steer it, newest last. */
const ALLOWED_REVIEWERS_KEEP = 200;

/** What a task keeps of folded reviews: the folds by the review they wait with. Plain JSON. */
export interface FoldState {
  folds: ReviewFold[];
}

/** A writer's later reviews folded into their review `into`, waiting in the forge queue; `full` once one past the bound came. */
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

/** Remembers that `reviewer`'s review was read back as allowed to steer the task: their later reviews may fold. */
export function rememberAllowed(t: TaskRun, reviewer: string): void {
  const who = reviewer.toLowerCase();
  const allowed = (t.s.forge_allowed ??= []);
  if (allowed.includes(who)) return;
  allowed.push(who);
  if (allowed.length > ALLOWED_REVIEWERS_KEEP) allowed.splice(0, allowed.length - ALLOWED_REVIEWERS_KEEP);
}

/**
 * Refuses a later review of a reviewer whose review waits unless it may fold: the reviewer was read as allowed
 * before, and their fold is not full.
 */
export function validateFold(t: TaskRun, waiting: TaskReviewEvent, e: TaskForgeEvent & { reviewer: string }): void {
  if (!(t.s.forge_allowed ?? []).includes(e.reviewer.toLowerCase())) {
    throw ApplicationFailure.create({ type: 'ReviewRefused', message: `a review by ${e.reviewer} already waits to be read`, nonRetryable: true });
  }
  const fold = t.s.review_folds?.folds.find((f) => f.into === waiting.review_id);
  if (fold?.full === true) {
    throw ApplicationFailure.create({
      type: 'ReviewRefused',
      message: `${MAX_FOLDED_REVIEWS} later reviews by ${e.reviewer} already wait with their review ${waiting.review_id} for the next round; the rest is not passed on`,
      nonRetryable: true,
    });
  }
}

/** Folds validated review `e` into the writer's waiting review, or, with the fold full, marks it so (the writer is told when it is read). */
export function foldReview(t: TaskRun, waiting: TaskReviewEvent, e: TaskReviewEvent): void {
  const state = (t.s.review_folds ??= { folds: [] });
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
  trace(t, 'note', `review ${e.review_id} by ${e.reviewer} not passed on: ${MAX_FOLDED_REVIEWS} later reviews already wait with their review ${waiting.review_id}`, { delivery_id: e.delivery_id, review_id: e.review_id, into: waiting.review_id }, `github:${e.reviewer}`);
}

/** Takes the reviews folded into `into` as it is read (oldest first), and whether more came than were folded. */
export function takeFold(t: TaskRun, into: number): { later: TaskReviewEvent[]; full: boolean } {
  const state = t.s.review_folds;
  const fold = state?.folds.find((f) => f.into === into);
  if (state === undefined || fold === undefined) return { later: [], full: false };
  state.folds = state.folds.filter((f) => f !== fold);
  return { later: fold.reviews, full: fold.full === true };
}
