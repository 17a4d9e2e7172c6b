/**
 * After a task's pull request is approved in the inbox: the approval is ours, the merge is the forge's. Where the
 * operator turned merging on (GITHUB_MERGE_ON_APPROVE, copied into the task's source when it started), the worker
 * merges the approved commit once the forge allows it, trying again on a durable timer while it says "not yet";
 * otherwise, and once the worker gave up, the task waits for the pull request to be merged or closed on the forge.
 * The wall-clock cap, cancel and the forge's own close still end it while it waits.
 */
import { ActivityFailure, condition, patched, workflowInfo } from '@temporalio/workflow';
import { MERGE_MAX_ATTEMPTS, mergeRetryDelayMs, msBetween, type MergeMethod } from '../../domain/merge';
import type { InboxItem, Resolution } from '../../domain/task';
import { raise } from './inbox';
import { describeFailure, forgeActs } from './proxies';
import { parkedWait } from './sandbox';
import { mergeLatencyMs } from './pull-request';
import type { End, MergeWait, TaskPullRequest, TaskRun } from './state';
import { setState, trace } from './visibility';

/** Patch before which an inbox approval of a task's pull request ended the task done at once, unmerged. */
export const AWAIT_MERGE_PATCH = 'await-merge-on-approve';
/** Patch before which the merge wait never continued as new: it held its run however long it waited or however many attempts it made. */
export const MERGE_WAIT_CONTINUES_PATCH = 'merge-wait-continue-as-new';

/** Whether an approval of the review item waits for the merge: the task has an open pull request, and its history is one that waits. */
export function waitsForMerge(t: TaskRun): boolean {
  const pr = t.s.pr;
  return pr !== undefined && !pr.closed && t.input.source?.forge === 'github' && patched(AWAIT_MERGE_PATCH);
}

/**
 * Settles an approved review: merges (when the task's source says how) or waits for the forge, then ends done when
 * merged, rejected when closed unmerged; or returns 'continue' when Temporal suggests continuing as new, the wait
 * (approval, attempts made, an alert raised) carried in the state for the next run to resume.
 */
export async function awaitMerge(t: TaskRun, item: InboxItem, approval: Resolution): Promise<End | 'continue'> {
  const s = t.s;
  const pr = s.pr!;
  const method = t.input.source?.merge_method;
  // Resumed after a continue-as-new: the approval is the one the wait started with, and the trace has it already.
  const resumed = s.merge !== undefined;
  const m: MergeWait = (s.merge ??= { approved_by: approval.actor, approved_at: approval.at, sha: s.commit!, attempts: 0 });
  setState(t, 'awaiting_merge');
  if (!resumed) {
    trace(
      t,
      'awaiting_merge',
      method === undefined
        ? `approved by ${m.approved_by}; waiting for pull request #${pr.number} to be merged on GitHub`
        : `approved by ${m.approved_by}; merging pull request #${pr.number} at ${m.sha} (${method}) once GitHub allows it`,
      { number: pr.number, sha: m.sha, method: method ?? null },
      approval.actor,
    );
  }
  // Once the worker gave up (an alert asks a human), a later run does not start merging again.
  if (method !== undefined && m.alert === undefined) {
    if ((await mergeApproved(t, pr, m, method)) === 'continue') return 'continue';
  }
  // Decided as the wait starts, not when Temporal first suggests it: a history from before waited for the close alone,
  // and a wait that woke on the suggestion would cancel timers (the sandbox's release) that history never cancelled.
  if (patched(MERGE_WAIT_CONTINUES_PATCH)) {
    await parkedWait(t, () => pr.closed || workflowInfo().continueAsNewSuggested);
    if (!pr.closed) return 'continue';
  } else {
    await parkedWait(t, () => pr.closed);
  }
  return closedEnd(t, item, pr, m);
}

/** Whether the merge wait hands over to a new run now: Temporal suggests it, and this history is one whose merge wait does. */
function continueSuggested(): boolean {
  return workflowInfo().continueAsNewSuggested && patched(MERGE_WAIT_CONTINUES_PATCH);
}

/**
 * Tries to merge until it is merged or closed, GitHub refuses for good, or {@link MERGE_MAX_ATTEMPTS} pass; then a
 * human is asked. Returns 'continue' between attempts when the run should continue as new (the attempts are in `m`).
 */
async function mergeApproved(t: TaskRun, pr: TaskPullRequest, m: MergeWait, method: MergeMethod): Promise<'continue' | undefined> {
  let last = '';
  while (!pr.closed) {
    if (continueSuggested()) return 'continue';
    // The last refusal is this run's: after a continue-as-new the cap may come before any.
    if (m.attempts >= MERGE_MAX_ATTEMPTS) return alert(t, pr, m, `GitHub did not allow merging it after ${m.attempts} attempts${last === '' ? '' : `: ${last}`}`);
    m.attempts += 1;
    let attempt;
    try {
      attempt = await forgeActs.mergePullRequest({ repo: pr.repo, number: pr.number, sha: m.sha, method, base: t.input.spec.base_branch });
    } catch (err) {
      if (!(err instanceof ActivityFailure)) throw err;
      return alert(t, pr, m, `could not merge it: ${describeFailure(err)}`);
    }
    switch (attempt.outcome) {
      case 'merged':
        pr.closed = true;
        pr.merged_at = attempt.merged_at ?? new Date().toISOString();
        if (attempt.by === undefined) m.merged_here = true;
        else pr.closed_by = attempt.by;
        trace(t, 'note', `merged pull request #${pr.number} (${method})${attempt.merge_sha ? ` as ${attempt.merge_sha}` : ''}`, { number: pr.number, method, merge_sha: attempt.merge_sha, attempts: m.attempts });
        return;
      case 'closed':
        pr.closed = true;
        pr.merged_at = null;
        pr.closed_by = attempt.by ?? 'someone on GitHub';
        return;
      case 'head_moved':
        return alert(t, pr, m, `its head is no longer the approved ${m.sha}, which alone is merged: ${attempt.reason}`);
      case 'base_changed':
        return alert(t, pr, m, `it now targets ${attempt.base}, not ${t.input.spec.base_branch}, which the approval was for`);
      case 'refused':
        return alert(t, pr, m, `GitHub refuses to merge it: ${attempt.reason}`);
      case 'not_yet': {
        last = attempt.reason;
        const wait = mergeRetryDelayMs(m.attempts);
        trace(t, 'note', `GitHub will not merge #${pr.number} yet (attempt ${m.attempts}): ${attempt.reason}; trying again in ${Math.round(wait / 1000)} s`, { number: pr.number, attempt: m.attempts, wait_ms: wait });
        // A durable timer: it holds across worker restarts; the forge merging or closing it meanwhile ends the wait.
        await condition(() => pr.closed, wait);
      }
    }
  }
}

/** Asks a human why the worker stopped merging; the task keeps waiting for the pull request to be merged or closed on GitHub. */
function alert(t: TaskRun, pr: TaskPullRequest, m: MergeWait, why: string): undefined {
  const item = raise(t, 'health_alert', `Pull request #${pr.number} was approved but not merged: ${why}`, 'awaiting_merge', {
    number: pr.number,
    url: pr.url,
    sha: m.sha,
    attempts: m.attempts,
    reason: why,
    hint: 'merge or close the pull request on GitHub (the task ends when it is), or cancel the task',
  });
  m.alert = item.item_id;
  return undefined;
}

/** How a task ends once its approved pull request closed: done when merged (with its latencies), rejected otherwise. */
function closedEnd(t: TaskRun, item: InboxItem, pr: TaskPullRequest, m: MergeWait): End {
  const by = pr.closed_by ?? 'someone on GitHub';
  if (pr.merged_at === null) {
    return { state: 'rejected', result: `pull request #${pr.number} closed without merging by ${by} after approval by ${m.approved_by}` };
  }
  // Review to merge counts from the review item's opening (as for a merge on the forge before any approval); approval to merge from the inbox approval.
  const reviewToMerge = mergeLatencyMs(t, item);
  const approvalToMerge = msBetween(m.approved_at, pr.merged_at);
  trace(t, 'merged', `pull request #${pr.number} merged at ${pr.merged_at}`, { number: pr.number, merged_at: pr.merged_at, review_to_merge_ms: reviewToMerge, approval_to_merge_ms: approvalToMerge }, m.merged_here ? m.approved_by : by);
  const seconds = (ms: number | null) => (ms === null ? '?' : String(Math.round(ms / 1000)));
  const how = m.merged_here ? `merged (${t.input.source?.merge_method}) on approval by ${m.approved_by}` : `merged by ${by} after approval by ${m.approved_by}`;
  return { state: 'done', result: `pull request #${pr.number} ${how}; review to merge ${seconds(reviewToMerge)} s, approval to merge ${seconds(approvalToMerge)} s` };
}
