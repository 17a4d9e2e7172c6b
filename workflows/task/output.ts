/**
 * What a task hands back: the gated checkpoint committed and pushed, the review that follows, and
 * the end of the task (items closed, sandbox torn down, a rejected branch removed).
 */
import { ActivityFailure, CancellationScope, condition, allHandlersFinished, log, patched } from '@temporalio/workflow';
import { codeBlock, inertText } from '../../domain/markdown';
import { preview } from '../../domain/rules';
import type { TaskOutcome } from '../messages';
import type { EgressView } from '../../domain/egress';
import { egressView } from './egress';
import { awaitMerge, waitsForMerge } from './merge';
import { flushMirror } from './mirror';
import { waitFor, raise } from './inbox';
import { notificationsStarted, notify } from './notify';
import { describeFailure, io } from './proxies';
import { onSandbox, teardown } from './sandbox';
import { closePullRequest, leavePullRequest, mergedResult, mergeLatencyMs, openPullRequest, PULL_REQUEST_PATCH, waitForReview } from './pull-request';
import { firstLine, type End, type TaskRun } from './state';
import { flushTrace, setState, trace, view } from './visibility';

/** Commits and pushes the round's output, then opens a `pr_review` item. */
export async function publish(t: TaskRun): Promise<End | undefined> {
  const s = t.s;
  const spec = t.input.spec;
  setState(t, 'running');
  const pub = await onSandbox(t, 'io', (acts, sandbox) => acts.publishOutput({
    task_id: t.input.task_id,
    sandbox,
    repo: spec.repo,
    base_commit: s.provision!.base_commit,
    round: s.round,
    message: commitMessage(t),
    // What ships is the last gated checkpoint, never the live working copy: a rejected change is not in
    // it, and neither is what a process left running wrote after its command's snapshot.
    tree: s.checkpoint!,
  }));
  if (!pub.changed && !s.pushed) {
    return { state: 'done', result: `the ${spec.planner.kind === 'llm' ? 'agent' : 'recipe'} changed nothing; no branch was pushed` };
  }
  if (pub.changed) {
    s.branch = pub.branch;
    s.commit = pub.commit;
    s.pushed = true;
    trace(t, 'pushed', `pushed ${pub.branch} at ${pub.commit}`, { branch: pub.branch, commit: pub.commit, files_changed: pub.files_changed });
  } else {
    trace(t, 'note', `round ${s.round} changed nothing since ${s.commit}`);
  }
  const summary = prSummary(t, pub.stat);
  // The pull request first, so its review item names it from the start.
  const pullRequest = t.input.source !== undefined && patched(PULL_REQUEST_PATCH) ? await openPullRequest(t, summary) : {};
  const item = raise(t, 'pr_review', `Review ${pub.branch}: ${preview(firstLine(spec.goal), 100)}`, 'pr_open', {
    branch: pub.branch,
    commit: pub.commit,
    round: s.round,
    new_changes: pub.changed,
    files_changed: pub.files_changed,
    diff_stat: preview(pub.stat, 4_000),
    diff_preview: pub.diff_preview,
    diff_ref: pub.diff?.ref ?? null,
    outputs: s.step_outputs.map((o) => ({ step: o.name, exit_code: o.exit_code, output_preview: o.preview, output_ref: o.output_ref })),
    summary,
    ...networkDetail(t),
    ...pullRequest,
  });
  s.review_item = item.item_id;
  s.phase = 'review';
  return undefined;
}

/**
 * Waits for the human's review: reject ends the task, approve too (or waits for the merge of its pull request, which
 * may hand over to a new run: 'continue'), request_changes starts another round.
 */
export async function awaitReview(t: TaskRun): Promise<End | 'continue' | undefined> {
  const s = t.s;
  const item = s.items.find((i) => i.item_id === s.review_item);
  if (!item) throw new Error(`review item ${s.review_item} missing from state`);
  const r = s.pr === undefined ? await waitFor(t, item) : await waitForReview(t, item);
  if (r.action === 'approve' && s.pr?.merged_at) {
    const latency = mergeLatencyMs(t, item);
    trace(t, 'merged', `pull request #${s.pr.number} merged at ${s.pr.merged_at}`, { number: s.pr.number, merged_at: s.pr.merged_at, review_to_merge_ms: latency }, r.actor);
    return { state: 'done', result: `${mergedResult(t, item)} by ${r.actor}` };
  }
  // Approving a pull request is ours; merging it is the forge's (or the worker's, where the operator turned that on).
  if (r.action === 'approve' && waitsForMerge(t)) return awaitMerge(t, item, r);
  if (r.action === 'approve') return { state: 'done', result: `approved by ${r.actor}; branch ${s.branch} at ${s.commit}` };
  if (r.action === 'reject') return { state: 'rejected', result: s.pr?.closed ? `pull request #${s.pr.number} closed without merging by ${r.actor}` : `pull request rejected by ${r.actor}` };
  // request_changes: run the planner again with the reviewer's comment, then offer a new review.
  setState(t, 'changes_requested');
  s.round += 1;
  s.feedback = r.comment ?? null;
  s.step_index = 0;
  s.step_outputs = [];
  s.phase = 'steps';
  if (s.agent) {
    s.agent.finish = null;
    s.agent.check_failures = 0;
    s.agent.pending.push({ role: 'user', text: `A reviewer requested changes (round ${s.round}):\n${r.comment ?? '(no comment)'}\nMake them, run the checks, then call finish again.` });
  }
  return undefined;
}

/** The commit message of a round: the goal, then the recipe or the agent's summary, then review feedback. */
function commitMessage(t: TaskRun): string {
  const s = t.s;
  const spec = t.input.spec;
  const planner = spec.planner;
  const how =
    planner.kind === 'recipe'
      ? ['Recipe:', ...planner.steps.map((st, i) => `- ${st.name ?? `step ${i + 1}`}: ${preview(st.run, 200)}`)]
      : [`Summary (${planner.provider} ${planner.model}):`, preview(s.agent?.finish?.summary ?? '', 4_000)];
  const lines = [preview(firstLine(spec.goal), 72), '', preview(spec.goal, 4_000), '', ...how];
  if (s.round > 1 && s.feedback) lines.push('', `Review feedback (round ${s.round}):`, preview(s.feedback, 2_000));
  // The issue's text, the model's words and reviewers' land on the default branch with a merge: none of it may ping or close an issue.
  return inertText(lines.join('\n'));
}

/** The pull request text, in the template every reviewer sees: goal, changes, risks, how to test. */
function prSummary(t: TaskRun, stat: string): string {
  const s = t.s;
  const spec = t.input.spec;
  const risks: string[] = [];
  for (const item of s.items) {
    if (item.kind === 'risky_action' && item.resolution?.action === 'approve') {
      risks.push(`- ${item.title} (approved by ${item.resolution.actor})`);
    }
  }
  if (s.provision?.sandbox.isolation === 'none') risks.push('- commands ran without isolation (process driver)');
  const finish = s.agent?.finish ?? null;
  if (finish?.risks.trim()) risks.push(`- stated by the agent: ${preview(finish.risks.trim(), 2_000)}`);
  if (risks.length === 0) risks.push('- none flagged by policy');
  const planner = spec.planner;
  const howTo = [
    `- \`git fetch origin ${s.branch ?? `agent/${t.input.task_id}`} && git checkout FETCH_HEAD\``,
    ...(planner.kind === 'recipe'
      ? planner.steps.map((st) => `- \`${preview(st.run, 200)}\``)
      : [...(s.agent?.check_commands ?? []).map((c) => `- \`${preview(c, 200)}\``), ...(finish?.how_to_test.trim() ? [preview(finish.how_to_test.trim(), 2_000)] : [])]),
  ];
  const ev = egressView(t);
  const network = ev ? ['', '## Network', ...networkLines(t, ev)] : [];
  return [
    '## Goal',
    preview(spec.goal, 2_000),
    '',
    ...(finish ? ['## Summary', preview(finish.summary, 4_000), ''] : []),
    '## Changes',
    codeBlock(preview(stat, 3_000)),
    '',
    '## Risks',
    ...risks,
    '',
    '## How to test',
    ...howTo,
    ...network,
  ].join('\n');
}

/** The review item's network part: every refused request (up to the kept bound) and what was allowed and used. */
function networkDetail(t: TaskRun): Record<string, unknown> {
  const ev = egressView(t);
  if (!ev) return {};
  const u = t.s.usage;
  return {
    blocked_requests: ev.blocked,
    network: {
      allowlist: ev.allowlist,
      granted: ev.granted,
      allowed_requests: ev.allowed_count,
      blocked_count: ev.blocked_count,
      bytes_sent: u.net_bytes_sent ?? 0,
      bytes_received: u.net_bytes_received ?? 0,
    },
  };
}

/** The "Network" section of the summary. */
function networkLines(t: TaskRun, ev: EgressView): string[] {
  const u = t.s.usage;
  const granted = ev.granted.map((g) => `${g.domain} (${g.phase}, by ${g.actor})`);
  const lines = [
    `- allowed for the agent: ${ev.allowlist.length > 0 ? ev.allowlist.join(', ') : 'nothing'}${granted.length > 0 ? `; granted from the inbox: ${granted.join(', ')}` : ''}`,
    `- ${ev.allowed_count} request(s) through the proxy, ${u.net_bytes_sent ?? 0} bytes sent, ${u.net_bytes_received ?? 0} received`,
  ];
  if (ev.blocked_count === 0) return [...lines, '- no request was refused'];
  return [
    ...lines,
    `- ${ev.blocked_count} request(s) refused:`,
    ...ev.blocked.map((b) => `  - ${b.host}:${b.port} in ${b.step}: ${b.reason}${b.count > 1 ? ` (${b.count}×)` : ''}`),
  ];
}

/** Patch before which an ended task wrote no final record. */
export const TASK_RECORD_PATCH = 'task-record';

/** Writes the task's final view and whole trace where they outlive Temporal's retention; a failure is logged, never fatal. */
async function writeRecord(t: TaskRun): Promise<void> {
  try {
    await io.writeTaskRecord({ task_id: t.input.task_id, view: view(t), first_index: t.s.trace_offset, entries: t.s.trace });
  } catch (err) {
    log.error('task record not written', { task_id: t.input.task_id, error: String(err) });
  }
}

/** Ends the task: closes open items, tears the sandbox down and removes a rejected or cancelled branch. */
export async function finish(t: TaskRun, end: End): Promise<TaskOutcome> {
  const s = t.s;
  t.finished = true;
  for (const item of s.items) if (item.status === 'pending') item.status = 'closed';
  if (end.state === 'timed_out') {
    trace(t, 'health', `wall-clock cap of ${s.budget.max_wall_clock_minutes} min reached; the running step was cancelled and the sandbox torn down`);
  }
  await CancellationScope.nonCancellable(async () => {
    try {
      const outcome = await teardown(t);
      const said = {
        torn_down: 'sandbox torn down',
        released: 'sandbox released earlier: nothing left to tear down',
        gone: `worker ${s.provision?.worker?.id ?? ''} is gone, and the sandbox with it; its reaper removes what is left`,
      };
      trace(t, 'teardown', said[outcome]);
    } catch (err) {
      log.error('sandbox teardown failed', { task_id: t.input.task_id, error: String(err) });
      trace(t, 'health', `sandbox teardown failed: ${err instanceof ActivityFailure ? describeFailure(err) : String(err)}`);
    }
    if (end.state === 'rejected' || end.state === 'cancelled') await closePullRequest(t, end);
    // Timed out or failed, no one decided on the pull request: it stays open, saying the agent left it.
    else if (end.state === 'timed_out' || end.state === 'failed') await leavePullRequest(t, end);
    if ((end.state === 'rejected' || end.state === 'cancelled') && s.pushed && s.branch) {
      try {
        await io.deleteBranch({ repo: t.input.spec.repo, branch: s.branch });
        trace(t, 'branch_deleted', `deleted ${s.branch}`);
      } catch (err) {
        trace(t, 'health', `could not delete ${s.branch}: ${err instanceof ActivityFailure ? describeFailure(err) : String(err)}`);
      }
    }
  });
  s.result = end.result;
  trace(t, 'ended', end.result, { state: end.state });
  setState(t, end.state);
  notify(t, 'task_ended');
  await CancellationScope.nonCancellable(async () => {
    // The source issue shows how the task ended before the workflow returns.
    await flushMirror(t);
    await notificationsStarted(t);
    await flushTrace(t);
    if (patched(TASK_RECORD_PATCH)) await writeRecord(t);
    await condition(allHandlersFinished);
  });
  return { task_id: t.input.task_id, state: end.state, result: end.result, branch: s.pushed && end.state !== 'rejected' && end.state !== 'cancelled' ? s.branch : null, commit: s.commit };
}
