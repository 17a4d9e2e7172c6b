/**
 * The task workflow: one durable run per task, from sandbox to reviewed branch.
 *
 * Deterministic code only. Guards (wall clock, idle, budget) are Temporal timers
 * and conditions, so they hold across worker crashes, deploys and server restarts.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  allHandlersFinished,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { Activities, ProvisionResult, RunStepResult } from '../activities/types';
import {
  ACTIONS_BY_KIND,
  commandNeedingApproval,
  isTerminal,
  mergeBudget,
  mergePolicy,
  preview,
  protectedPathsTouched,
} from '../domain/rules';
import type {
  Budget,
  BudgetGrant,
  Decision,
  InboxItem,
  ItemKind,
  Policy,
  Resolution,
  TaskState,
  TaskView,
  TraceEntry,
  Usage,
} from '../domain/task';
import {
  cancelUpdate,
  decideUpdate,
  messageUpdate,
  taskQuery,
  traceQuery,
  type DecisionAck,
  type TaskOutcome,
  type TaskWorkflowInput,
} from './messages';
import {
  MEMO_INBOX,
  MEMO_SUMMARY,
  SA_ITEM_KINDS,
  SA_PENDING,
  SA_STATE,
  SA_WAITING_SINCE,
  type InboxMemo,
  type SummaryMemo,
} from './search-attributes';

/** Failure types the workflow raises from update validators; the API maps them to HTTP statuses. */
export const DECISION_FAILURES = ['TaskEnded', 'UnknownItem', 'StaleDecision', 'InvalidDecision'] as const;

const RETRY: RetryPolicy = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 };
const io = proxyActivities<Activities>({ startToCloseTimeout: '10 minutes', retry: RETRY });

/** Trace entries kept in workflow state; older ones are archived to the artifact store. */
const TRACE_KEEP = 200;
/** Settled items kept in state for the task view; pending ones are always kept. */
const SETTLED_ITEMS_KEEP = 50;
/** How long a worker may go silent inside a step before Temporal hands the step to another worker. */
const STEP_HEARTBEAT_TIMEOUT = '10 seconds';

type Phase = 'steps' | 'publish' | 'review';

/** Everything a run hands to the next one on continue-as-new. Plain JSON. */
interface State {
  state: TaskState;
  updated_at: string;
  policy: Policy;
  budget: Budget;
  usage: Usage;
  provision: ProvisionResult | null;
  checkpoint: string | null;
  planned: boolean;
  phase: Phase;
  round: number;
  step_index: number;
  /** `round:index` of commands a human approved. */
  approved: string[];
  feedback: string | null;
  last_message: string | null;
  step_outputs: { index: number; name: string; exit_code: number; preview: string; output_ref: string }[];
  review_item: string | null;
  branch: string | null;
  commit: string | null;
  pushed: boolean;
  items: InboxItem[];
  item_seq: number;
  trace: TraceEntry[];
  trace_offset: number;
  deadline_at: string;
  idle_since: string;
  result: string | null;
}

interface End {
  state: Extract<TaskState, 'done' | 'rejected' | 'failed' | 'cancelled' | 'timed_out'>;
  result: string;
}

/** Runs one task to the end; the workflow id is the task id. */
export async function taskWorkflow(input: TaskWorkflowInput): Promise<TaskOutcome> {
  return new TaskRun(input).run();
}

class TaskRun {
  private readonly s: State;
  private readonly work = new CancellationScope();
  private endRequest: End | null = null;
  private finished = false;

  constructor(private readonly input: TaskWorkflowInput) {
    const spec = input.spec;
    const now = new Date().toISOString();
    this.s = (input.carried as State | undefined) ?? {
      state: 'queued',
      updated_at: now,
      policy: spec.policy,
      budget: spec.budget,
      usage: { steps: 0, tokens: 0, usd: 0 },
      provision: null,
      checkpoint: null,
      planned: false,
      phase: 'steps',
      round: 1,
      step_index: 0,
      approved: [],
      feedback: null,
      last_message: null,
      step_outputs: [],
      review_item: null,
      branch: null,
      commit: null,
      pushed: false,
      items: [],
      item_seq: 0,
      trace: [],
      trace_offset: 0,
      deadline_at: addMinutes(input.created_at, spec.budget.max_wall_clock_minutes),
      idle_since: now,
      result: null,
    };
  }

  async run(): Promise<TaskOutcome> {
    this.installHandlers();
    if (!this.input.carried) {
      this.trace('created', `task created by ${this.input.spec.requester}`, {
        repo: this.input.spec.repo,
        base_branch: this.input.spec.base_branch,
        planner: this.input.spec.planner.kind,
      });
    }
    // Memo fields upserted by an earlier run do not carry over continue-as-new: publish them again.
    this.publishVisibility();
    // Rejects only when the whole workflow is cancelled from outside; the catch below handles that.
    void this.wallClockGuard().catch(() => undefined);

    let end: End;
    try {
      const outcome = await this.work.run(() => this.drive());
      if (outcome === 'continue') {
        this.finished = true;
        await this.flushTrace();
        await condition(allHandlersFinished);
        return continueAsNew<typeof taskWorkflow>({ ...this.input, carried: this.s });
      }
      end = outcome;
    } catch (err) {
      if (isCancellation(err)) {
        // No endRequest means the workflow itself was cancelled through Temporal, not through the API.
        end = this.endRequest ?? { state: 'cancelled', result: 'cancelled through Temporal' };
      } else if (err instanceof ActivityFailure) {
        end = { state: 'failed', result: describeFailure(err) };
      } else {
        // Anything else is a bug in this code: fail the workflow task so a fixed deploy can resume it.
        throw err;
      }
    }
    return this.finish(end);
  }

  /** The task's main line; returns how it ended, or 'continue' at a safe point when history is long. */
  private async drive(): Promise<End | 'continue'> {
    const s = this.s;
    const spec = this.input.spec;
    if (!s.provision) {
      this.setState('provisioning');
      const p = await io.provisionSandbox({
        task_id: this.input.task_id,
        repo: spec.repo,
        base_branch: spec.base_branch,
        egress_allowlist: s.policy.egress_allowlist,
        deadline_at: s.deadline_at,
      });
      s.provision = p;
      s.checkpoint = p.checkpoint;
      s.policy = mergePolicy(s.policy, p.repo_policy);
      const budget = mergeBudget(s.budget, p.repo_policy);
      if (budget.max_wall_clock_minutes !== s.budget.max_wall_clock_minutes) {
        s.deadline_at = addMinutes(this.input.created_at, budget.max_wall_clock_minutes);
      }
      s.budget = budget;
      s.idle_since = new Date().toISOString();
      this.trace('provisioned', `sandbox ${p.sandbox.id} ready (driver ${p.sandbox.driver}, isolation: ${p.sandbox.isolation})`, {
        base_commit: p.base_commit,
        repo_policy: p.repo_policy !== null,
        isolation: p.sandbox.isolation,
      });
      if (p.sandbox.isolation === 'none') {
        this.trace('health', 'isolation: none — commands run as plain processes on the worker host');
      }
    }

    const steps = spec.planner.steps;
    if (!s.planned) {
      this.setState('planning');
      this.trace('plan', `recipe of ${steps.length} step(s)`, {
        steps: steps.map((st, i) => st.name ?? `step ${i + 1}: ${preview(st.run, 120)}`),
      });
      if (s.policy.require_plan_approval) {
        const item = this.raise('plan_approval', `Approve the plan: ${preview(spec.goal, 100)}`, 'awaiting_approval', {
          goal: preview(spec.goal, 2_000),
          steps: steps.map((st) => ({ name: st.name ?? null, run: preview(st.run, 500) })),
        });
        const r = await this.waitFor(item);
        if (r.action === 'reject') return { state: 'rejected', result: `plan rejected by ${r.actor}` };
      }
      s.planned = true;
    }

    for (;;) {
      if (this.shouldContinueAsNew()) return 'continue';
      await this.flushTrace();
      if (s.phase === 'steps') {
        if (s.step_index < steps.length) {
          const end = await this.runRecipeStep(s.step_index);
          if (end) return end;
          s.step_index += 1;
          continue;
        }
        s.phase = 'publish';
      }
      if (s.phase === 'publish') {
        const end = await this.publish();
        if (end) return end;
      }
      if (s.phase === 'review') {
        const item = s.items.find((i) => i.item_id === s.review_item);
        if (!item) throw new Error(`review item ${s.review_item} missing from state`);
        const r = await this.waitFor(item);
        if (r.action === 'approve') return { state: 'done', result: `approved by ${r.actor}; branch ${s.branch} at ${s.commit}` };
        if (r.action === 'reject') return { state: 'rejected', result: `pull request rejected by ${r.actor}` };
        // request_changes: run the recipe again with the reviewer's comment, then offer a new review.
        this.setState('changes_requested');
        s.round += 1;
        s.feedback = r.comment ?? null;
        s.step_index = 0;
        s.step_outputs = [];
        s.phase = 'steps';
      }
    }
  }

  /** Runs recipe step `index` through its gates; returns an End when a human stops the task there. */
  private async runRecipeStep(index: number): Promise<End | undefined> {
    const s = this.s;
    const step = this.input.spec.planner.steps[index]!;
    const label = step.name ?? `step ${index + 1}`;
    const key = `${s.round}:${index}`;

    const pattern = commandNeedingApproval(s.policy, step.run);
    if (pattern !== null && !s.approved.includes(key)) {
      const item = this.raise('risky_action', `Run command: ${preview(step.run, 100)}`, 'awaiting_approval', {
        reason: 'command matches an approval pattern',
        command: preview(step.run, 4_000),
        matched: pattern,
        step: index,
        step_name: label,
      });
      const r = await this.waitFor(item);
      if (r.action === 'reject') return { state: 'rejected', result: `command of ${label} rejected by ${r.actor}` };
      s.approved.push(key);
    }

    for (;;) {
      await this.ensureStepBudget();
      this.setState('running');
      const before = s.checkpoint!;
      const attempt = await this.runStepWithIdleGuard(index, step.run, step.timeout_seconds);
      if (attempt.kind === 'idle') {
        const item = this.raise('health_alert', `Stuck: no successful step for ${s.budget.max_idle_minutes} min`, 'stuck', {
          reason: 'idle',
          step: index,
          step_name: label,
          command: preview(step.run, 1_000),
          hint: 'send a message to retry the step, or cancel the task',
        });
        await this.waitFor(item);
        continue;
      }
      if (attempt.kind === 'error') {
        const item = this.raise('health_alert', `Step could not run: ${preview(attempt.message, 120)}`, 'stuck', {
          reason: 'activity_failed',
          step: index,
          step_name: label,
          error: preview(attempt.message, 2_000),
          hint: 'send a message to retry the step, or cancel the task',
        });
        await this.waitFor(item);
        continue;
      }
      const res = attempt.result;
      s.usage.steps += 1;
      this.trace('step', `${label} exited ${res.exit_code}${res.timed_out ? ' (timed out)' : ''}`, {
        index,
        round: s.round,
        exit_code: res.exit_code,
        duration_ms: res.duration_ms,
        output_ref: res.output.ref,
        output_preview: preview(res.output_preview, 500),
        changed_paths: res.changed_paths.slice(0, 50),
      });
      if (res.exit_code !== 0) {
        const item = this.raise('health_alert', `${label} failed with exit code ${res.exit_code}`, 'stuck', {
          reason: res.timed_out ? 'step_timeout' : 'step_failed',
          step: index,
          step_name: label,
          command: preview(step.run, 1_000),
          exit_code: res.exit_code,
          output_preview: res.output_preview,
          output_ref: res.output.ref,
          hint: 'send a message to retry the step (it runs again on the same working copy), or cancel the task',
        });
        await this.waitFor(item);
        continue;
      }

      s.checkpoint = res.checkpoint;
      s.idle_since = new Date().toISOString();
      s.step_outputs = [
        ...s.step_outputs.filter((o) => o.index !== index),
        { index, name: label, exit_code: res.exit_code, preview: preview(res.output_preview, 600), output_ref: res.output.ref },
      ].slice(-20);

      const touched = protectedPathsTouched(s.policy, res.changed_paths);
      if (touched.length > 0) {
        const d = await io.diffCheckpoints({
          task_id: this.input.task_id,
          sandbox: s.provision!.sandbox,
          from: before,
          to: res.checkpoint,
          paths: touched,
          name: `protected-${s.round}-${index}`,
        });
        const item = this.raise('risky_action', `${label} changed protected paths: ${touched.slice(0, 3).join(', ')}`, 'awaiting_approval', {
          reason: 'change touches protected paths',
          step: index,
          step_name: label,
          paths: touched.slice(0, 100),
          diff_stat: preview(d.stat, 2_000),
          diff_preview: d.preview,
          diff_ref: d.diff.ref,
        });
        const r = await this.waitFor(item);
        if (r.action === 'reject') return { state: 'rejected', result: `change to protected paths rejected by ${r.actor}` };
      }
      return undefined;
    }
  }

  /** Runs one command; the idle guard cancels it when no step has succeeded for `max_idle_minutes`. */
  private async runStepWithIdleGuard(
    index: number,
    command: string,
    timeoutSeconds: number,
  ): Promise<{ kind: 'done'; result: RunStepResult } | { kind: 'idle' } | { kind: 'error'; message: string }> {
    const s = this.s;
    const acts = proxyActivities<Activities>({
      startToCloseTimeout: `${timeoutSeconds + 120} seconds`,
      heartbeatTimeout: STEP_HEARTBEAT_TIMEOUT,
      retry: { ...RETRY, maximumAttempts: 5 },
    });
    const env: Record<string, string> = { AGENT_TASK_ID: this.input.task_id, AGENT_ROUND: String(s.round) };
    if (s.feedback) env.AGENT_FEEDBACK = s.feedback;
    if (s.last_message) env.AGENT_MESSAGE = s.last_message;

    const scope = new CancellationScope();
    let settled = false;
    let idle = false;
    const idleLeft = Date.parse(s.idle_since) + s.budget.max_idle_minutes * 60_000 - Date.now();
    void condition(() => settled, Math.max(idleLeft, 1))
      .then((done) => {
        if (!done) {
          idle = true;
          scope.cancel();
        }
      })
      // The task itself was cancelled: the step's own rejection carries that.
      .catch(() => undefined);
    try {
      const result = await scope.run(() =>
        acts.runStep({
          task_id: this.input.task_id,
          sandbox: s.provision!.sandbox,
          index,
          round: s.round,
          command,
          timeout_seconds: timeoutSeconds,
          checkpoint: s.checkpoint!,
          env,
        }),
      );
      return { kind: 'done', result };
    } catch (err) {
      if (idle && isCancellation(err)) return { kind: 'idle' };
      if (err instanceof ActivityFailure && !isCancellation(err)) return { kind: 'error', message: describeFailure(err) };
      throw err;
    } finally {
      settled = true;
    }
  }

  /** Parks on a `budget_request` while the step budget is spent; a grant raises the limit, cancel ends the task. */
  private async ensureStepBudget(): Promise<void> {
    const s = this.s;
    while (s.usage.steps >= s.budget.max_steps) {
      const item = this.raise('budget_request', `Step budget exhausted (${s.usage.steps}/${s.budget.max_steps})`, 'awaiting_budget', {
        exhausted: 'max_steps',
        usage: { ...s.usage },
        budget: { ...s.budget },
        hint: 'grant_budget with {"max_steps": N} to continue, or cancel',
      });
      await this.waitFor(item);
    }
  }

  /** Commits and pushes the round's output, then opens a `pr_review` item. */
  private async publish(): Promise<End | undefined> {
    const s = this.s;
    const spec = this.input.spec;
    this.setState('running');
    const pub = await io.publishOutput({
      task_id: this.input.task_id,
      sandbox: s.provision!.sandbox,
      repo: spec.repo,
      base_commit: s.provision!.base_commit,
      round: s.round,
      message: this.commitMessage(),
    });
    if (!pub.changed && !s.pushed) {
      return { state: 'done', result: 'the recipe changed nothing; no branch was pushed' };
    }
    if (pub.changed) {
      s.branch = pub.branch;
      s.commit = pub.commit;
      s.pushed = true;
      this.trace('pushed', `pushed ${pub.branch} at ${pub.commit}`, { branch: pub.branch, commit: pub.commit, files_changed: pub.files_changed });
    } else {
      this.trace('note', `round ${s.round} changed nothing since ${s.commit}`);
    }
    const item = this.raise('pr_review', `Review ${pub.branch}: ${preview(firstLine(spec.goal), 100)}`, 'pr_open', {
      branch: pub.branch,
      commit: pub.commit,
      round: s.round,
      new_changes: pub.changed,
      files_changed: pub.files_changed,
      diff_stat: preview(pub.stat, 4_000),
      diff_preview: pub.diff_preview,
      diff_ref: pub.diff?.ref ?? null,
      outputs: s.step_outputs.map((o) => ({ step: o.name, exit_code: o.exit_code, output_preview: o.preview, output_ref: o.output_ref })),
      summary: this.prSummary(pub.stat),
    });
    s.review_item = item.item_id;
    s.phase = 'review';
    return undefined;
  }

  private commitMessage(): string {
    const s = this.s;
    const spec = this.input.spec;
    const steps = spec.planner.steps.map((st, i) => `- ${st.name ?? `step ${i + 1}`}: ${preview(st.run, 200)}`);
    const lines = [preview(firstLine(spec.goal), 72), '', preview(spec.goal, 4_000), '', 'Recipe:', ...steps];
    if (s.round > 1 && s.feedback) lines.push('', `Review feedback (round ${s.round}):`, preview(s.feedback, 2_000));
    return lines.join('\n');
  }

  /** The pull request text, in the template every reviewer sees: goal, changes, risks, how to test. */
  private prSummary(stat: string): string {
    const s = this.s;
    const spec = this.input.spec;
    const risks: string[] = [];
    for (const item of s.items) {
      if (item.kind === 'risky_action' && item.resolution?.action === 'approve') {
        risks.push(`- ${item.title} (approved by ${item.resolution.actor})`);
      }
    }
    if (s.provision?.sandbox.isolation === 'none') risks.push('- commands ran without isolation (process driver)');
    if (risks.length === 0) risks.push('- none flagged by policy');
    const howTo = [
      `- \`git fetch origin ${s.branch ?? `agent/${this.input.task_id}`} && git checkout FETCH_HEAD\``,
      ...spec.planner.steps.map((st) => `- \`${preview(st.run, 200)}\``),
    ];
    return [
      '## Goal',
      preview(spec.goal, 2_000),
      '',
      '## Changes',
      '```',
      preview(stat, 3_000),
      '```',
      '',
      '## Risks',
      ...risks,
      '',
      '## How to test',
      ...howTo,
    ].join('\n');
  }

  /** Ends the task: closes open items, tears the sandbox down and removes a rejected or cancelled branch. */
  private async finish(end: End): Promise<TaskOutcome> {
    const s = this.s;
    this.finished = true;
    for (const item of s.items) if (item.status === 'pending') item.status = 'closed';
    if (end.state === 'timed_out') {
      this.trace('health', `wall-clock cap of ${s.budget.max_wall_clock_minutes} min reached; the running step was cancelled and the sandbox torn down`);
    }
    await CancellationScope.nonCancellable(async () => {
      try {
        await io.teardownSandbox({ task_id: this.input.task_id, sandbox: s.provision?.sandbox ?? null });
        this.trace('teardown', 'sandbox torn down');
      } catch (err) {
        log.error('sandbox teardown failed', { task_id: this.input.task_id, error: String(err) });
        this.trace('health', `sandbox teardown failed: ${err instanceof ActivityFailure ? describeFailure(err) : String(err)}`);
      }
      if ((end.state === 'rejected' || end.state === 'cancelled') && s.pushed && s.branch) {
        try {
          await io.deleteBranch({ repo: this.input.spec.repo, branch: s.branch });
          this.trace('branch_deleted', `deleted ${s.branch}`);
        } catch (err) {
          this.trace('health', `could not delete ${s.branch}: ${err instanceof ActivityFailure ? describeFailure(err) : String(err)}`);
        }
      }
    });
    s.result = end.result;
    this.trace('ended', end.result, { state: end.state });
    this.setState(end.state);
    await CancellationScope.nonCancellable(async () => {
      await this.flushTrace();
      await condition(allHandlersFinished);
    });
    return { task_id: this.input.task_id, state: end.state, result: end.result, branch: s.pushed && end.state !== 'rejected' && end.state !== 'cancelled' ? s.branch : null, commit: s.commit };
  }

  /** Ends the task with `timed_out` when the wall-clock deadline passes; a time grant moves the deadline. */
  private async wallClockGuard(): Promise<void> {
    while (!this.finished) {
      const deadline = this.s.deadline_at;
      const left = Date.parse(deadline) - Date.now();
      if (left <= 0) {
        this.requestEnd({ state: 'timed_out', result: `wall-clock cap of ${this.s.budget.max_wall_clock_minutes} min reached` });
        return;
      }
      await condition(() => this.finished || this.s.deadline_at !== deadline, left);
    }
  }

  private requestEnd(end: End): void {
    if (this.endRequest || this.finished) return;
    this.endRequest = end;
    this.work.cancel();
  }

  private shouldContinueAsNew(): boolean {
    return workflowInfo().continueAsNewSuggested;
  }

  // ---- inbox items -------------------------------------------------------------------------

  private raise(kind: ItemKind, title: string, waiting: TaskState, detail: Record<string, unknown>): InboxItem {
    const s = this.s;
    s.item_seq += 1;
    const item: InboxItem = {
      item_id: `${kind}-${s.item_seq}`,
      kind,
      title,
      created_at: new Date().toISOString(),
      status: 'pending',
      detail: { ...detail, usage: { ...s.usage } },
    };
    s.items.push(item);
    this.trace('item_opened', `${kind} ${item.item_id}: ${title}`, { item_id: item.item_id, kind });
    this.setState(waiting, true);
    return item;
  }

  /** Waits until a human settles the item; cancellation of the task interrupts the wait. */
  private async waitFor(item: InboxItem): Promise<Resolution> {
    await condition(() => item.status !== 'pending');
    if (!item.resolution) throw new Error(`item ${item.item_id} closed without a resolution`);
    return item.resolution;
  }

  private settle(item: InboxItem, resolution: Resolution): void {
    item.status = 'resolved';
    item.resolution = resolution;
    this.s.idle_since = resolution.at;
    const settled = this.s.items.filter((i) => i.status !== 'pending');
    if (settled.length > SETTLED_ITEMS_KEEP) {
      const drop = new Set(settled.slice(0, settled.length - SETTLED_ITEMS_KEEP).map((i) => i.item_id));
      this.s.items = this.s.items.filter((i) => !drop.has(i.item_id) || i.item_id === this.s.review_item);
    }
  }

  // ---- messages ----------------------------------------------------------------------------

  private installHandlers(): void {
    setHandler(taskQuery, () => this.view());
    setHandler(traceQuery, () => ({ entries: this.s.trace, first_index: this.s.trace_offset }));
    setHandler(decideUpdate, (d) => this.decide(d), { validator: (d) => this.validateDecision(d) });
    setHandler(
      messageUpdate,
      (m) => {
        const at = new Date().toISOString();
        this.s.last_message = m.text;
        this.trace('message', preview(m.text, 2_000), undefined, m.actor);
        let settled: InboxItem | null = null;
        for (const item of this.s.items) {
          if (item.status === 'pending' && item.kind === 'health_alert') {
            this.settle(item, { action: 'message', actor: m.actor, at, comment: m.text });
            settled = item;
          }
        }
        this.publishVisibility();
        return this.ack(settled);
      },
      { validator: (_m) => this.assertOpen() },
    );
    setHandler(
      cancelUpdate,
      (c) => {
        this.trace('decision', `cancelled${c.reason ? `: ${preview(c.reason, 500)}` : ''}`, undefined, c.actor);
        this.requestEnd({ state: 'cancelled', result: `cancelled by ${c.actor}${c.reason ? `: ${preview(c.reason, 500)}` : ''}` });
        return this.ack(null);
      },
      { validator: (_c) => this.assertOpen() },
    );
  }

  private assertOpen(): void {
    if (this.endRequest || this.finished || isTerminal(this.s.state)) {
      throw ApplicationFailure.create({
        type: 'TaskEnded',
        message: `task ${this.input.task_id} has ended or is ending (${this.endRequest?.state ?? this.s.state})`,
        nonRetryable: true,
      });
    }
  }

  private validateDecision(d: Decision): void {
    this.assertOpen();
    const item = this.s.items.find((i) => i.item_id === d.item_id);
    if (!item) {
      throw ApplicationFailure.create({ type: 'UnknownItem', message: `task ${this.input.task_id} has no item ${d.item_id}`, nonRetryable: true });
    }
    if (item.status !== 'pending') {
      const r = item.resolution;
      throw ApplicationFailure.create({
        type: 'StaleDecision',
        message: r
          ? `item ${d.item_id} is no longer pending: ${r.action} by ${r.actor} at ${r.at}`
          : `item ${d.item_id} is no longer pending`,
        nonRetryable: true,
      });
    }
    const allowed = ACTIONS_BY_KIND[item.kind];
    if (!allowed.includes(d.action)) {
      throw ApplicationFailure.create({
        type: 'InvalidDecision',
        message: `action "${d.action}" does not apply to a ${item.kind} item; use one of: ${allowed.join(', ')}`,
        nonRetryable: true,
      });
    }
    if (item.kind === 'plan_approval' && d.action === 'request_changes' && this.input.spec.planner.kind === 'recipe') {
      throw ApplicationFailure.create({
        type: 'InvalidDecision',
        message: 'a recipe plan is fixed: approve or reject it',
        nonRetryable: true,
      });
    }
    if (d.action === 'grant_budget' && !d.budget) {
      throw ApplicationFailure.create({ type: 'InvalidDecision', message: 'grant_budget needs a budget', nonRetryable: true });
    }
  }

  /** Applies a validated decision; never blocks (the main line reacts to the settled item). */
  private decide(d: Decision): DecisionAck {
    const s = this.s;
    const item = s.items.find((i) => i.item_id === d.item_id)!;
    const resolution: Resolution = { action: d.action, actor: d.actor, at: new Date().toISOString() };
    if (d.comment !== undefined) resolution.comment = d.comment;
    if (d.answer !== undefined) resolution.answer = d.answer;
    if (d.budget !== undefined) resolution.budget = d.budget;
    this.settle(item, resolution);
    this.trace('decision', `${d.action} on ${item.kind} ${item.item_id}${d.comment ? `: ${preview(d.comment, 500)}` : ''}`, { item_id: item.item_id, action: d.action }, d.actor);
    if (d.action === 'grant_budget' && d.budget) this.grant(d.budget);
    if (d.action === 'message' && d.comment) s.last_message = d.comment;
    if (d.action === 'cancel') {
      this.requestEnd({ state: 'cancelled', result: `cancelled by ${d.actor} from ${item.kind} ${item.item_id}` });
    }
    this.publishVisibility();
    return this.ack(item);
  }

  private grant(g: BudgetGrant): void {
    const b = this.s.budget;
    if (g.max_tokens) b.max_tokens += g.max_tokens;
    if (g.max_usd) b.max_usd += g.max_usd;
    if (g.max_steps) b.max_steps += g.max_steps;
    if (g.max_wall_clock_minutes) {
      b.max_wall_clock_minutes += g.max_wall_clock_minutes;
      this.s.deadline_at = addMinutes(this.s.deadline_at, g.max_wall_clock_minutes);
    }
  }

  private ack(item: InboxItem | null): DecisionAck {
    return { task_id: this.input.task_id, item, state: this.s.state };
  }

  // ---- visibility and trace ----------------------------------------------------------------

  private setState(state: TaskState, force = false): void {
    const s = this.s;
    if (s.state === state && !force) return;
    if (s.state !== state) this.trace('state', `${s.state} → ${state}`, { from: s.state, to: state });
    s.state = state;
    s.updated_at = new Date().toISOString();
    this.publishVisibility();
  }

  /** Upserts the search attributes and memo the inbox reads: the inbox is a query over these. */
  private publishVisibility(): void {
    const s = this.s;
    const pending = s.items.filter((i) => i.status === 'pending');
    const oldest = pending.reduce<string | null>((min, i) => (min === null || i.created_at < min ? i.created_at : min), null);
    const kinds = [...new Set(pending.map((i) => i.kind))];
    upsertSearchAttributes([
      { key: SA_STATE, value: s.state },
      { key: SA_PENDING, value: pending.length },
      { key: SA_ITEM_KINDS, value: kinds.length > 0 ? kinds : null },
      { key: SA_WAITING_SINCE, value: oldest ? new Date(oldest) : null },
    ]);
    const inbox: InboxMemo = {
      items: pending.map((i) => ({ item_id: i.item_id, kind: i.kind, title: i.title, created_at: i.created_at })),
    };
    const summary: SummaryMemo = {
      goal: preview(this.input.spec.goal, 200),
      state: s.state,
      created_at: this.input.created_at,
      updated_at: s.updated_at,
    };
    upsertMemo({ [MEMO_INBOX]: inbox, [MEMO_SUMMARY]: summary });
  }

  private trace(type: string, message: string, data?: Record<string, unknown>, actor?: string): void {
    const entry: TraceEntry = { at: new Date().toISOString(), type, message };
    if (actor !== undefined) entry.actor = actor;
    if (data !== undefined) entry.data = data;
    this.s.trace.push(entry);
  }

  /** Moves all but the newest trace entries to the artifact store so state stays small. */
  private async flushTrace(): Promise<void> {
    const s = this.s;
    if (s.trace.length <= TRACE_KEEP) return;
    const old = s.trace.slice(0, s.trace.length - TRACE_KEEP / 2);
    await io.archiveTrace({ task_id: this.input.task_id, first_index: s.trace_offset, entries: old });
    s.trace = s.trace.slice(old.length);
    s.trace_offset += old.length;
  }

  private view(): TaskView {
    const s = this.s;
    return {
      task_id: this.input.task_id,
      state: s.state,
      spec: this.input.spec,
      created_at: this.input.created_at,
      updated_at: s.updated_at,
      usage: s.usage,
      budget: s.budget,
      policy: s.policy,
      isolation: s.provision?.sandbox.isolation ?? 'unknown',
      sandbox_id: s.provision?.sandbox.id ?? null,
      branch: s.branch,
      commit: s.commit,
      round: s.round,
      step_index: s.step_index,
      items: s.items,
      trace_count: s.trace_offset + s.trace.length,
      result: s.result,
    };
  }
}

function addMinutes(iso: string, minutes: number): string {
  return new Date(Date.parse(iso) + minutes * 60_000).toISOString();
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]!.trim();
}

/** The most specific message in an activity failure chain. */
function describeFailure(err: ActivityFailure): string {
  const cause = err.cause;
  if (cause instanceof ApplicationFailure) return `${cause.type ?? 'Error'}: ${cause.message}`;
  return cause?.message ?? err.message;
}
