/**
 * The task's pull request on its forge: opened (or updated) after each round's push, fed by the forge's own
 * events (merged, closed, changes requested by someone with write access), and closed when the task is rejected.
 *
 * Forge events arrive as an Update whose validator refuses another pull request's event and a delivery already
 * taken; its handler never blocks: what needs the forge (a review's comments, the reviewer's permission) is
 * queued for the main line, which reads it through an activity while it waits for the review.
 */
import { ActivityFailure, patched, setHandler, ApplicationFailure } from '@temporalio/workflow';
import { foldFullReply, notAllowedReply, requestCutReply, reviewRequest, type ReviewFeedback, type SelfCheckReport, type TaskForgeEvent, type TaskReviewEvent } from '../../domain/forge';
import { codeBlock, inertMarkdown, inertText } from '../../domain/markdown';
import { msBetween } from '../../domain/merge';
import { asWords, preview } from '../../domain/rules';
import type { InboxItem, Resolution } from '../../domain/task';
import { checksFailedUpdate, forgeEventUpdate, reviewCommentedUpdate, type DecisionAck } from '../messages';
import { answeredCiAlert, checksAtReview, closeCiAlert, queueChecksFailed, takeCiAlertAnswer, takeFailedChecks, validateChecksFailed } from './ci';
import { assertOpen } from './handlers';
import { settle } from './inbox';
import { describeFailure, forgeActs } from './proxies';
import { parkedWait } from './sandbox';
import { firstLine, type End, type TaskRun } from './state';
import { foldReview, rememberAllowed, REVIEW_FOLD_PATCH, takeFold, validateFold, waitingReview } from './review-fold';
import { publishVisibility, trace } from './visibility';

/** Patch before which a task from a forge issue opened no pull request. */
export const PULL_REQUEST_PATCH = 'forge-pull-request';
/** Patch before which a `commented` review never reached a task (the API ignored it); from it on, one is read back like a review requesting changes. */
export const COMMENTED_REVIEW_PATCH = 'forge-commented-review';

/** Deliveries a task remembers, to refuse a redelivered event. */
const SEEN_DELIVERIES_KEEP = 200;
/** Reviews waiting to be read back while the agent works; more are refused until the wait for review reads them. */
const MAX_QUEUED_REVIEWS = 20;
/** Reviews a task remembers having taken (each reviewer refused is read once, each writer's review is a round: few). */
const REVIEWS_KEEP = 1_000;
/** Reviewers refused (no write access) a task remembers, so each gets one reply. */
const REFUSED_REVIEWERS_KEEP = 200;
/** Longest step output a check run and the pull request's test log carry per step. */
const CHECK_OUTPUT_CHARS = 4_000;

/** What the round's self-check was, as the check run on the pull request reports it. */
export function selfCheckOf(t: TaskRun): SelfCheckReport {
  const s = t.s;
  if (t.input.spec.planner.kind === 'llm') {
    const checks = s.agent?.check_commands ?? [];
    if (checks.length === 0) return { conclusion: 'neutral', summary: 'the agent had no check commands to run', text: '' };
    return {
      conclusion: 'success',
      summary: `${checks.length} check command(s) passed after the agent finished`,
      text: inertMarkdown(checks.map((c) => `- ${codeBlock(preview(c, 200))}`).join('\n')),
    };
  }
  const failed = s.step_outputs.filter((o) => o.exit_code !== 0);
  return {
    conclusion: s.step_outputs.length === 0 ? 'neutral' : failed.length === 0 ? 'success' : 'failure',
    summary: inertMarkdown(
      failed.length === 0 ? `${s.step_outputs.length} recipe step(s) exited 0` : `${failed.length} of ${s.step_outputs.length} recipe step(s) failed: ${failed.map((o) => o.name).join(', ')}`,
    ),
    text: inertMarkdown(s.step_outputs.map((o) => `### ${o.name} (exit ${o.exit_code})\n${codeBlock(preview(o.preview, CHECK_OUTPUT_CHARS))}`).join('\n\n')),
  };
}

/** The pull request's body: the review template, the test log folded, and what the task cost so far. */
function pullRequestBody(t: TaskRun, summary: string, check: SelfCheckReport): string {
  const u = t.s.usage;
  const cost = `- ${u.steps} step(s), ${u.tokens} model token(s), $${u.usd.toFixed(4)}`;
  const log = check.text === '' ? [] : ['', '<details><summary>Self-check</summary>', '', check.summary, '', check.text, '', '</details>'];
  // The summary carries the issue's text, the model's words and what the repository printed: none of it may ping, close or fold.
  return [inertMarkdown(summary), '', '## Cost', cost, ...log].join('\n');
}

/** Opens or updates the round's pull request after its push; returns what the review item says of it, or nothing (a failure is traced, and the review goes on without it). */
export async function openPullRequest(t: TaskRun, summary: string): Promise<Record<string, unknown>> {
  const s = t.s;
  const source = t.input.source;
  if (source?.forge !== 'github' || s.branch === null || s.commit === null) return {};
  const check = selfCheckOf(t);
  try {
    const pr = await forgeActs.publishPullRequest({
      task_id: t.input.task_id,
      repo: source.repo,
      head: s.branch,
      base: t.input.spec.base_branch,
      commit: s.commit,
      ...(s.pr === undefined ? {} : { number: s.pr.number }),
      // The issue's title, whoever opened it: a squash merge makes it the title of a commit on the default branch.
      title: inertText(preview(firstLine(t.input.spec.goal), 100)),
      body: pullRequestBody(t, summary, check),
      fixes: source.issue,
      self_check: check,
    });
    if (s.pr !== undefined && s.pr.number !== pr.number) {
      // The forge answered with another pull request than the task's: keep the task's, say so.
      trace(t, 'health', `GitHub answered with pull request #${pr.number}, not the task's #${s.pr.number}; the task keeps #${s.pr.number}`);
      return { pull_request: { number: s.pr.number, url: s.pr.url, draft: s.pr.draft } };
    }
    s.pr = { repo: source.repo, number: pr.number, url: pr.url, draft: pr.draft, closed: false, merged_at: null };
    trace(t, pr.created ? 'pr_opened' : 'pr_updated', `${pr.created ? 'opened' : 'updated'} pull request #${pr.number}${pr.draft ? ' (draft)' : ''}: ${pr.url}`, {
      number: pr.number,
      url: pr.url,
      draft: pr.draft,
      self_check: check.conclusion,
    });
    return { pull_request: { number: pr.number, url: pr.url, draft: pr.draft } };
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `no pull request for ${s.branch}: ${describeFailure(err)}; the branch is pushed and the review is in the inbox`);
    return {};
  }
}

/** Closes the pull request of a rejected or cancelled task, unless the forge closed it already. */
export async function closePullRequest(t: TaskRun, end: End): Promise<void> {
  const pr = t.s.pr;
  if (pr === undefined || pr.closed) return;
  try {
    await forgeActs.closePullRequest({ repo: pr.repo, number: pr.number, comment: `The task ended ${end.state}: ${preview(end.result, 1_000)}` });
    pr.closed = true;
    trace(t, 'pr_closed', `closed pull request #${pr.number}`, { number: pr.number });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `could not close pull request #${pr.number}: ${describeFailure(err)}`);
  }
}

/** Patch before which a task that ended timed out or failed left its open pull request without a word. */
export const LEFT_OPEN_PATCH = 'forge-pr-left-open-comment';

/**
 * Says on the open pull request of a task that ended with no decision on it (timed out, failed) that the agent left
 * it: the pull request stays open (an approved one may still be worth merging by hand), and nobody reading it takes
 * it for work under way. A failure is traced; the end goes on.
 */
export async function leavePullRequest(t: TaskRun, end: End): Promise<void> {
  const pr = t.s.pr;
  if (pr === undefined || pr.closed || !patched(LEFT_OPEN_PATCH)) return;
  const m = t.s.merge;
  // The result may quote what a command or the forge said: inert, so it pings and closes nothing.
  const why = `The task ended ${asWords(end.state)}: ${inertMarkdown(preview(end.result, 1_000))}.`;
  const body = m !== undefined
    ? `${why} It was approved in the Agent Inbox by ${m.approved_by} at ${m.sha} and no longer merges or changes this pull request: merge it here if it is still wanted, or close it.`
    : `${why} The agent no longer works on this pull request: reviews, comments and failing checks here do not reach it any more. Its last round was not approved; review it here and merge or close it.`;
  try {
    await forgeActs.commentOnPullRequest({ repo: pr.repo, number: pr.number, body });
    trace(t, 'note', `said on pull request #${pr.number} that the task ended ${asWords(end.state)} and left it open`, { number: pr.number });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `could not comment on pull request #${pr.number}: ${describeFailure(err)}`);
  }
}

/** Installs the forge event Update. */
export function installForgeHandler(t: TaskRun): void {
  setHandler(forgeEventUpdate, (e) => takeForgeEvent(t, e), { validator: (e) => validateForgeEvent(t, e) });
  setHandler(checksFailedUpdate, (e) => takeForgeEvent(t, e), { validator: (e) => validateForgeEvent(t, e) });
  setHandler(reviewCommentedUpdate, (e) => takeForgeEvent(t, e), { validator: (e) => validateForgeEvent(t, e) });
}

function validateForgeEvent(t: TaskRun, e: TaskForgeEvent): void {
  assertOpen(t);
  const pr = t.s.pr;
  // Forge repository names are case-insensitive; failing checks of a suite may name the task's branch and no pull request.
  if (pr === undefined || pr.repo.toLowerCase() !== e.repo.toLowerCase() || (pr.number !== e.number && !(e.kind === 'checks_failed' && e.number === null))) {
    throw ApplicationFailure.create({
      type: 'NotThisPullRequest',
      message: `task ${t.input.task_id} ${pr === undefined ? 'has no pull request' : `is on ${pr.repo}#${pr.number}`}, not ${e.number === null ? e.repo : `${e.repo}#${e.number}`}`,
      nonRetryable: true,
    });
  }
  const s = t.s;
  if ((s.forge_seen ?? []).includes(e.delivery_id)) {
    throw ApplicationFailure.create({ type: 'DuplicateDelivery', message: `delivery ${e.delivery_id} was taken already`, nonRetryable: true });
  }
  if (e.kind === 'pr_closed') return;
  // Approved in the inbox: no more rounds, whatever is asked or fails on the forge; the pull request waits to be merged or closed.
  if (s.merge !== undefined) {
    throw ApplicationFailure.create({ type: 'ReviewRefused', message: `the task's pull request was approved by ${s.merge.approved_by} and waits to be merged`, nonRetryable: true });
  }
  if (e.kind === 'checks_failed') return validateChecksFailed(t, e);
  // GitHub's signature does not cover the delivery id: the same review re-sent under a new id is refused by its own id.
  const queued = s.forge_queue ?? [];
  if ((s.forge_reviews ?? []).includes(e.review_id)) {
    throw ApplicationFailure.create({ type: 'DuplicateDelivery', message: `review ${e.review_id} was taken already`, nonRetryable: true });
  }
  // Someone refused once is not read again (nor answered again): their reviews cannot grow the history or the comments.
  const who = e.reviewer.toLowerCase();
  if ((s.forge_refused ?? []).includes(who)) {
    throw ApplicationFailure.create({ type: 'ReviewRefused', message: `${e.reviewer} may not steer this task`, nonRetryable: true });
  }
  // A writer's later review while their first waits folds into it (bounded; only someone read as a writer before); only someone with none waiting takes a place in the queue.
  const waiting = waitingReview(t, e.reviewer);
  if (waiting !== undefined) return validateFold(t, waiting, e);
  if (queued.length >= MAX_QUEUED_REVIEWS) {
    throw ApplicationFailure.create({ type: 'ReviewRefused', message: `${MAX_QUEUED_REVIEWS} reviews already wait to be read`, nonRetryable: true });
  }
}

/** Takes a validated forge event: a close settles the review (or ends the round in progress); a review is queued. */
function takeForgeEvent(t: TaskRun, e: TaskForgeEvent): DecisionAck {
  const s = t.s;
  const seen = (s.forge_seen ??= []);
  seen.push(e.delivery_id);
  if (seen.length > SEEN_DELIVERIES_KEEP) seen.splice(0, seen.length - SEEN_DELIVERIES_KEEP);
  const item = s.items.find((i) => i.item_id === s.review_item && i.status === 'pending') ?? null;
  if (e.kind === 'checks_failed') {
    queueChecksFailed(t, e);
    return { task_id: t.input.task_id, item: null, state: s.state };
  }
  if (e.kind !== 'pr_closed') {
    const waiting = waitingReview(t, e.reviewer);
    if (waiting !== undefined) {
      foldReview(t, waiting, e);
    } else {
      const what = e.kind === 'changes_requested' ? 'requested changes' : 'commented';
      trace(t, 'forge_event', `review ${e.review_id} by ${e.reviewer} ${what} on #${e.number}`, { delivery_id: e.delivery_id, review_id: e.review_id }, `github:${e.reviewer}`);
      (s.forge_queue ??= []).push(e);
    }
    // Remembered from now on, not once read: a copy re-sent while it is being read is refused too.
    const reviews = (s.forge_reviews ??= []);
    reviews.push(e.review_id);
    if (reviews.length > REVIEWS_KEEP) reviews.splice(0, reviews.length - REVIEWS_KEEP);
    return { task_id: t.input.task_id, item: null, state: s.state };
  }
  const pr = s.pr!;
  pr.closed = true;
  pr.merged_at = e.merged ? e.merged_at : null;
  pr.closed_by = e.actor;
  const what = e.merged ? 'merged' : 'closed without merging';
  trace(t, 'forge_event', `pull request #${e.number} ${what} by ${e.actor}`, { delivery_id: e.delivery_id, merged: e.merged, merged_at: e.merged_at }, e.actor);
  if (item !== null) {
    const resolution: Resolution = { action: e.merged ? 'approve' : 'reject', actor: e.actor, at: new Date().toISOString(), comment: `pull request #${e.number} ${what}` };
    settle(t, item, resolution);
  } else if (s.merge === undefined) {
    // The agent is working on a round: the forge's decision ends it. (Approved and waiting to be merged, the wait sees it.)
    t.requestEnd(e.merged ? { state: 'done', result: mergedResult(t, null) } : { state: 'rejected', result: `pull request #${e.number} closed without merging by ${e.actor}` });
  }
  publishVisibility(t);
  return { task_id: t.input.task_id, item, state: s.state };
}

/** The result of a task whose pull request was merged, with the time from the review item to the merge when it waited on one. */
export function mergedResult(t: TaskRun, item: InboxItem | null): string {
  const latency = item === null ? null : mergeLatencyMs(t, item);
  return `pull request #${t.s.pr!.number} merged${latency === null ? '' : `; review to merge ${Math.round(latency / 1000)} s`}`;
}

/** Review-to-merge latency in ms, when the pull request was merged while its review item waited; else null. */
export function mergeLatencyMs(t: TaskRun, item: InboxItem): number | null {
  const at = t.s.pr?.merged_at;
  if (at === null || at === undefined) return null;
  return msBetween(item.created_at, at);
}

/**
 * Waits until the review item is settled, by a human in the inbox or by the forge: a review requesting changes,
 * or a comment review with line comments or words to the agent, is read back (its comments batched, its author's
 * permission checked) and, from someone with write access, settles the item as request_changes; anyone else gets
 * a polite reply and the wait goes on. Failing checks already on the commit as the wait starts count as delivered.
 */
export async function waitForReview(t: TaskRun, item: InboxItem): Promise<Resolution> {
  const s = t.s;
  await checksAtReview(t, item);
  for (;;) {
    await parkedWait(t, () => item.status !== 'pending' || (s.forge_queue?.length ?? 0) > 0 || answeredCiAlert(t) !== null);
    if (item.status !== 'pending') break;
    const answered = answeredCiAlert(t);
    if (answered !== null) {
      takeCiAlertAnswer(t, item, answered);
      continue;
    }
    const e = s.forge_queue!.shift()!;
    if (e.kind === 'changes_requested' || (e.kind === 'review_commented' && patched(COMMENTED_REVIEW_PATCH))) await takeReview(t, item, e);
    else if (e.kind === 'checks_failed') await takeFailedChecks(t, item, e);
  }
  closeCiAlert(t);
  if (!item.resolution) throw new Error(`item ${item.item_id} closed without a resolution`);
  return item.resolution;
}

/**
 * Reads back review `e` and the writer's later reviews folded into it, and, while the item waits, settles it as one
 * request for changes; someone without write access gets the polite reply instead, and a writer whose words a
 * bound cut gets one reply saying so.
 */
async function takeReview(t: TaskRun, item: InboxItem, e: TaskReviewEvent): Promise<void> {
  const fold = takeFold(t, e.review_id);
  // Folds exist only in histories that made them; the patch marks the first read of one.
  const reviews = fold.later.length > 0 && patched(REVIEW_FOLD_PATCH) ? [e, ...fold.later] : [e];
  const taken: { e: TaskReviewEvent; feedback: ReviewFeedback }[] = [];
  for (const r of reviews) {
    const feedback = await readReview(t, r);
    if (feedback === 'refused') return;
    if (feedback !== null) taken.push({ e: r, feedback });
  }
  // A human may have decided in the inbox while the reviews were read: theirs stands.
  if (taken.length === 0 || item.status !== 'pending') return;
  const actor = `github:${e.reviewer}`;
  const request = reviewRequest(taken.map((r) => r.feedback));
  const ids = taken.map((r) => r.e.review_id);
  settle(t, item, { action: 'request_changes', actor, at: new Date().toISOString(), comment: request.text });
  trace(t, 'decision', `request_changes on pr_review ${item.item_id} from ${ids.length === 1 ? `review ${e.review_id}` : `reviews ${ids.join(', ')}`}: ${preview(request.text, 500)}`, {
    item_id: item.item_id,
    action: 'request_changes',
    review_id: e.review_id,
    ...(ids.length === 1 ? {} : { review_ids: ids }),
    comments: taken.reduce((n, r) => n + r.feedback.comments.length, 0),
  }, actor);
  publishVisibility(t);
  // One reply, once the writer is known to be one: more reviews came than fold, or a bound cut what folded.
  if ((fold.full || request.cut) && patched(REVIEW_FOLD_PATCH)) await reply(t, fold.full ? foldFullReply(e.reviewer) : requestCutReply(e.reviewer));
}

/**
 * Reads one review back: its feedback to pass on, null when there is nothing to pass on (unread, a note, dismissed
 * since), or 'refused' when its author may not steer the agent (remembered, and answered unless it asked nothing).
 */
async function readReview(t: TaskRun, e: TaskReviewEvent): Promise<ReviewFeedback | null | 'refused'> {
  const pr = t.s.pr!;
  const actor = `github:${e.reviewer}`;
  let feedback;
  try {
    feedback = await forgeActs.readReviewFeedback({ repo: pr.repo, number: pr.number, review_id: e.review_id, reviewer: e.reviewer });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `could not read review ${e.review_id} on #${pr.number}: ${describeFailure(err)}`);
    return null;
  }
  // A comment review with no line comment and no word to the agent (a reviewer's note to others) asks nothing: not even a refusal.
  const note = e.kind === 'review_commented' && !e.addressed && !(feedback.has_comments ?? feedback.comments.length > 0);
  if (feedback.allowed) rememberAllowed(t, e.reviewer);
  else {
    // Refused from now on, a note too: anyone can post reviews on a public pull request, and each one read grows the history.
    const refused = (t.s.forge_refused ??= []);
    refused.push(e.reviewer.toLowerCase());
    if (refused.length > REFUSED_REVIEWERS_KEEP) refused.splice(0, refused.length - REFUSED_REVIEWERS_KEEP);
  }
  if (note) {
    trace(t, 'note', `review ${e.review_id} by ${e.reviewer} has no line comments and does not speak to the agent; not passed on`, { review_id: e.review_id }, actor);
    return feedback.allowed ? null : 'refused';
  }
  if (!feedback.allowed) {
    trace(t, 'note', `review ${e.review_id} by ${e.reviewer} ignored: their permission is ${feedback.permission}, not write`, { review_id: e.review_id }, actor);
    await reply(t, notAllowedReply(e.reviewer));
    return 'refused';
  }
  // Dismissed on GitHub after it was sent: it asks nothing any more.
  const sent = e.kind === 'changes_requested' ? 'changes_requested' : 'commented';
  if (feedback.state !== undefined && feedback.state !== sent) {
    trace(t, 'note', `review ${e.review_id} by ${e.reviewer} is ${feedback.state} now; not passed on`, { review_id: e.review_id }, actor);
    return null;
  }
  return feedback;
}

/** Comments `body` on the task's pull request; a failure is traced, never thrown. */
async function reply(t: TaskRun, body: string): Promise<void> {
  const pr = t.s.pr!;
  try {
    await forgeActs.commentOnPullRequest({ repo: pr.repo, number: pr.number, body });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `could not reply on #${pr.number}: ${describeFailure(err)}`);
  }
}
