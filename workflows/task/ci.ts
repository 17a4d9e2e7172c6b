/**
 * CI on the task's pull request: failing checks on the commit the task last pushed send the agent back, as a
 * request for changes on the pending review, up to the task's CI rounds in a row (its source's `max_ci_rounds`,
 * fixed when the task started); then a `health_alert` asks a human, whose message is one more round.
 *
 * A delivery only says where to look: the validator takes it for the task's own pull request and its last
 * commit, once per commit; the wait for review reads the checks back through an activity, leaving out the task's
 * own self-check, and hands them on inert. As that wait starts it reads the commit's checks once on its own, so a
 * failure delivered before the task could take it (no pull request yet, the commit not registered) is not lost.
 */
import { ActivityFailure, ApplicationFailure, patched } from '@temporalio/workflow';
import { CHECKS_ACTOR, checksRequest, DEFAULT_MAX_CI_ROUNDS, type CommitChecks, type TaskChecksFailed } from '../../domain/checks';
import { preview } from '../../domain/rules';
import type { InboxItem } from '../../domain/task';
import { raise, settle } from './inbox';
import { describeFailure, forgeActs } from './proxies';
import type { TaskRun } from './state';
import { publishVisibility, trace } from './visibility';

/** Patch before which no task read failing checks back or sent its agent back for them. */
export const CI_FEEDBACK_PATCH = 'forge-ci-feedback';
/** Patch before which a task read a commit's checks only when a delivery said one failed, never when its review started. */
export const CI_AT_REVIEW_PATCH = 'forge-ci-at-review';

/** Commits whose failing checks a task remembers having taken (one per round: few). */
const CI_COMMITS_KEEP = 200;
/** Forge events waiting to be read while the agent works, beyond which failing checks are refused. */
const MAX_QUEUED_EVENTS = 20;

/** What a task keeps of CI: the rounds it sent in a row, the commits taken, an open alert. Plain JSON. */
export interface CiState {
  /** CI rounds in a row, counted up to the round the last one started. */
  rounds: number;
  /** The round the last CI round started (a round since started by anyone else breaks the run). */
  round: number;
  /** Commits whose failing checks were taken, newest last, bounded. */
  commits: string[];
  /** The last commit whose checks were read as the wait for its review started (once per commit); absent before the first. */
  read_at_review?: string;
  /** The health alert asking a human, while it is open, and the request for changes it holds back. */
  alert?: { item_id: string; request: string };
}

/** CI rounds in a row the task may take. */
export function maxCiRounds(t: TaskRun): number {
  return t.input.source?.max_ci_rounds ?? DEFAULT_MAX_CI_ROUNDS;
}

/** Refuses failing checks of any commit but the one the task last pushed, and a commit whose checks were taken or wait to be read. */
export function validateChecksFailed(t: TaskRun, e: TaskChecksFailed): void {
  const s = t.s;
  const refuse = (type: string, message: string) => ApplicationFailure.create({ type, message, nonRetryable: true });
  if (e.head_sha !== s.commit) {
    throw refuse('ChecksRefused', `checks of ${e.head_sha} are not of the commit task ${t.input.task_id} last pushed${s.commit === null ? '' : ` (${s.commit})`}`);
  }
  // Marked when taken, not once read: a copy re-sent while the first is read is refused too.
  if ((s.ci?.commits ?? []).includes(e.head_sha)) throw refuse('DuplicateDelivery', `failing checks of ${e.head_sha} were taken already`);
  const queue = s.forge_queue ?? [];
  if (queue.length >= MAX_QUEUED_EVENTS) throw refuse('ChecksRefused', `${MAX_QUEUED_EVENTS} forge events already wait to be read`);
}

/** Takes validated failing checks: the commit marked taken, traced, and queued for the wait for review to read back. */
export function queueChecksFailed(t: TaskRun, e: TaskChecksFailed): void {
  const ci = (t.s.ci ??= { rounds: 0, round: 0, commits: [] });
  ci.commits.push(e.head_sha);
  if (ci.commits.length > CI_COMMITS_KEEP) ci.commits.splice(0, ci.commits.length - CI_COMMITS_KEEP);
  trace(t, 'forge_event', `check ${preview(e.check, 200)} failed on ${e.head_sha}`, { delivery_id: e.delivery_id, head_sha: e.head_sha }, CHECKS_ACTOR);
  (t.s.forge_queue ??= []).push(e);
}

/** Forgets that the commit's failing checks were taken, so a later delivery for it is read again (nothing was passed on). */
function untake(t: TaskRun, sha: string): void {
  const ci = t.s.ci;
  if (ci !== undefined) ci.commits = ci.commits.filter((c) => c !== sha);
}

/**
 * Reads the failing checks of `e`'s commit back and, while the review item still waits, settles it as a round of
 * changes naming them, or, with the task's CI rounds used up, opens a health alert instead.
 */
export async function takeFailedChecks(t: TaskRun, item: InboxItem, e: TaskChecksFailed): Promise<void> {
  const s = t.s;
  // Queued while a round ran: the round pushed since, and the commit's checks say nothing of what is up for review.
  if (e.head_sha !== s.commit) {
    trace(t, 'note', `failing checks of ${e.head_sha} not passed on: the task pushed ${s.commit} since`, { head_sha: e.head_sha });
    return;
  }
  if (!patched(CI_FEEDBACK_PATCH)) return;
  const checks = await readChecks(t, e.head_sha);
  // Unread, nothing failing but the task's own self-check, or re-run since and passing: nothing to send, and the commit stays open to a later failure.
  if (checks === null || checks.failed.length === 0) {
    untake(t, e.head_sha);
    return;
  }
  sendBack(t, item, e.head_sha, checks);
}

/**
 * Reads the checks of the commit up for review once, as the wait for its review starts, and takes a failure already
 * there as a delivered one: a failure delivered before the task had its pull request, or before it registered the
 * pushed commit, was refused then. Nothing failing yet (CI still running) leaves the commit to later deliveries.
 */
export async function checksAtReview(t: TaskRun, item: InboxItem): Promise<void> {
  const s = t.s;
  const sha = s.commit;
  if (s.pr === undefined || sha === null || item.status !== 'pending') return;
  // A review waiting from the last round goes first, about the code it saw; this commit's checks come by delivery.
  if ((s.forge_queue ?? []).some((q) => q.kind !== 'checks_failed')) return;
  // Once per commit, also across continue-as-new; a commit whose failure was delivered and taken is read by that delivery.
  if (s.ci?.read_at_review === sha || (s.ci?.commits ?? []).includes(sha)) return;
  if (!patched(CI_AT_REVIEW_PATCH)) return;
  const ci = (s.ci ??= { rounds: 0, round: 0, commits: [] });
  ci.read_at_review = sha;
  const checks = await readChecks(t, sha);
  if (checks === null || checks.failed.length === 0) return;
  // Taken as a delivery is: one round per commit. One delivered while the checks were read may have taken it first.
  if (ci.commits.includes(sha)) return;
  ci.commits.push(sha);
  if (ci.commits.length > CI_COMMITS_KEEP) ci.commits.splice(0, ci.commits.length - CI_COMMITS_KEEP);
  trace(t, 'forge_event', `check ${preview(checks.failed.map((c) => c.name).join(', '), 200)} failed on ${sha} before the review started`, { head_sha: sha }, CHECKS_ACTOR);
  sendBack(t, item, sha, checks);
}

/** The checks of commit `sha` read back (the task's own self-check left out), or null when they could not be read (traced). */
async function readChecks(t: TaskRun, sha: string): Promise<CommitChecks | null> {
  const pr = t.s.pr!;
  let checks: CommitChecks;
  try {
    checks = await forgeActs.readCommitChecks({ repo: pr.repo, commit: sha });
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    trace(t, 'health', `could not read the checks of ${sha} on #${pr.number}: ${describeFailure(err)}`, { head_sha: sha });
    return null;
  }
  if (checks.failed.length === 0) {
    trace(t, 'note', `no failing check on ${sha} besides the task's own (${checks.read} read, ${checks.pending} not finished)`, { head_sha: sha });
  }
  return checks;
}

/** While the review item still waits, settles it as a round of changes naming the failing checks, or, with the task's CI rounds used up, opens a health alert instead. */
function sendBack(t: TaskRun, item: InboxItem, sha: string, checks: CommitChecks): void {
  const s = t.s;
  const pr = s.pr!;
  // A human may have decided in the inbox while the checks were read: theirs stands.
  if (item.status !== 'pending') return;
  const ci = s.ci!;
  const request = checksRequest(checks);
  const names = checks.failed.map((c) => c.name);
  const inARow = ci.round === s.round ? ci.rounds : 0;
  const max = maxCiRounds(t);
  if (inARow >= max) {
    if (ci.alert !== undefined && s.items.some((i) => i.item_id === ci.alert!.item_id && i.status === 'pending')) return;
    const alert = raise(t, 'health_alert', `CI still failing after ${inARow} round(s): ${preview(names.join(', '), 100)}`, 'stuck', {
      reason: 'ci_failing',
      head_sha: sha,
      pull_request: { number: pr.number, url: pr.url },
      checks: names,
      rounds: inARow,
      max_rounds: max,
      request: preview(request, 4_000),
      hint: 'send a message to let the agent try again with your guidance, decide the review, or cancel the task',
    });
    ci.alert = { item_id: alert.item_id, request };
    publishVisibility(t);
    return;
  }
  ci.rounds = inARow + 1;
  // The request for changes moves the task to the next round.
  ci.round = s.round + 1;
  settle(t, item, { action: 'request_changes', actor: CHECKS_ACTOR, at: new Date().toISOString(), comment: request });
  trace(t, 'decision', `request_changes on pr_review ${item.item_id} from failing checks on ${sha}: ${preview(names.join(', '), 500)}`, {
    item_id: item.item_id,
    action: 'request_changes',
    head_sha: sha,
    checks: names,
    ci_round: ci.rounds,
    max_ci_rounds: max,
  }, CHECKS_ACTOR);
  publishVisibility(t);
}

/** The CI health alert, once a human answered it with a message (a cancel ends the task on its own). */
export function answeredCiAlert(t: TaskRun): InboxItem | null {
  const alert = t.s.ci?.alert;
  if (alert === undefined) return null;
  const item = t.s.items.find((i) => i.item_id === alert.item_id);
  return item !== undefined && item.status !== 'pending' && item.resolution?.action === 'message' ? item : null;
}

/** Settles the waiting review as one more round: the failing checks and the human's message; CI's rounds in a row start again. */
export function takeCiAlertAnswer(t: TaskRun, review: InboxItem, alert: InboxItem): void {
  const ci = t.s.ci!;
  const held = ci.alert!.request;
  delete ci.alert;
  const r = alert.resolution!;
  ci.round = 0;
  const comment = `${held}\n\nMessage from ${r.actor}: ${r.comment ?? ''}`;
  settle(t, review, { ...r, action: 'request_changes', comment });
  trace(t, 'decision', `request_changes on pr_review ${review.item_id} from the answer to ${alert.item_id}: ${preview(r.comment ?? '', 500)}`, { item_id: review.item_id, action: 'request_changes', alert: alert.item_id }, r.actor);
  publishVisibility(t);
}

/** Closes a CI alert still open once the review is settled otherwise: the round it asked about is over. */
export function closeCiAlert(t: TaskRun): void {
  const alert = t.s.ci?.alert;
  if (alert === undefined) return;
  delete t.s.ci!.alert;
  const item = t.s.items.find((i) => i.item_id === alert.item_id);
  if (item !== undefined && item.status === 'pending') item.status = 'closed';
}
