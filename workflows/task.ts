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
  patched,
  proxyActivities,
  setHandler,
  allHandlersFinished,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';
import type { Activities, ProvisionResult, RunStepResult } from '../activities/types';
import type { AgentToolCallResult } from '../activities/llm/agent';
import { isSandboxTool, validateToolArgs } from '../activities/llm/tool-specs';
import type { ModelMessage, ToolCall } from '../activities/llm/types';
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
  LlmPlanner,
  RecipePlanner,
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

/** One model call: retried with backoff (429s and 5xx); a bad key or unknown model is not retried. */
const modelActs = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '60s', maximumAttempts: 8 },
});
/** Timeouts of the agent's `run` tool: its default and the most the model may ask for. */
const AGENT_RUN_TIMEOUT_SECONDS = 600;
const AGENT_RUN_MAX_TIMEOUT_SECONDS = 1_800;
/** One tool call: may run a command for up to the longest timeout, heartbeating. */
const toolActs = proxyActivities<Activities>({
  startToCloseTimeout: `${AGENT_RUN_MAX_TIMEOUT_SECONDS + 120} seconds`,
  heartbeatTimeout: '10 seconds',
  retry: { ...RETRY, maximumAttempts: 5 },
});
/** The same command failing this many times in a row, or this many calls changing nothing, is "stuck". */
const AGENT_REPEAT_FAILURES = 3;
const AGENT_NO_PROGRESS_CALLS = 15;

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
  /** The LLM planner's loop; absent for recipes (and in state carried from before it existed). */
  agent?: AgentState;
}

/** Where the LLM planner's loop stands. The conversation itself is in the artifact store. */
interface AgentState {
  /** Model calls made so far. */
  turn: number;
  /** Messages to send with the next model call: tool results, answers, notes. */
  pending: ModelMessage[];
  /** Tool calls of the last model reply not handled yet, in order. */
  calls: ToolCall[];
  /** Results of the handled calls of the last reply. */
  results: { id: string; name: string; output: string }[];
  planned: boolean;
  plan: string | null;
  check_commands: string[] | null;
  check_failures: number;
  finish: { summary: string; risks: string; how_to_test: string } | null;
  /** Tool calls in a row that changed nothing, and the same command failing in a row. */
  no_progress: number;
  repeat_failures: number;
  last_failure: string | null;
  /** Replies in a row with neither a tool call nor finish. */
  idle_replies: number;
  /** Tokens the conversation took at the last call (the next call's estimate) and what that call cost. */
  context_tokens: number;
  last_call_usd: number;
  /** The working copy may not be at the checkpoint (a change was rolled back, or a tool call failed). */
  tree_unsure?: boolean;
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

    const planner = spec.planner;
    if (planner.kind === 'recipe' && !s.planned) {
      const steps = planner.steps;
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
        if (planner.kind === 'llm') {
          const end = await this.runAgent(planner);
          if (end !== undefined) return end;
          s.phase = 'publish';
        } else if (s.step_index < planner.steps.length) {
          const end = await this.runRecipeStep(planner, s.step_index);
          if (end) return end;
          s.step_index += 1;
          continue;
        } else {
          s.phase = 'publish';
        }
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
        if (s.agent) {
          s.agent.finish = null;
          s.agent.check_failures = 0;
          s.agent.pending.push({ role: 'user', text: `A reviewer requested changes (round ${s.round}):\n${r.comment ?? '(no comment)'}\nMake them, run the checks, then call finish again.` });
        }
      }
    }
  }

  /** Runs recipe step `index` through its gates; returns an End when a human stops the task there. */
  private async runRecipeStep(planner: RecipePlanner, index: number): Promise<End | undefined> {
    const s = this.s;
    const step = planner.steps[index]!;
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
        const r = await this.gateProtectedChange(before, res.checkpoint, touched, `protected-${s.round}-${index}`, label, { step: index, step_name: label });
        if (r.action === 'reject') return { state: 'rejected', result: `change to protected paths rejected by ${r.actor}` };
      }
      return undefined;
    }
  }

  // ---- the LLM planner ---------------------------------------------------------------------

  /**
   * The agent's loop: model call → tool calls → results back → … → finish → self-check. Returns
   * undefined when the agent finished and its checks passed (publish next), an End when a human
   * or a failure ends the task, or 'continue' at a safe point when history is long.
   */
  private async runAgent(planner: LlmPlanner): Promise<End | 'continue' | undefined> {
    const s = this.s;
    const a = (s.agent ??= {
      turn: 0,
      pending: [],
      calls: [],
      results: [],
      planned: false,
      plan: null,
      check_commands: null,
      check_failures: 0,
      finish: null,
      no_progress: 0,
      repeat_failures: 0,
      last_failure: null,
      idle_replies: 0,
      context_tokens: 0,
      last_call_usd: 0,
    });
    if (a.check_commands === null) {
      this.setState('planning');
      const ctx = await io.agentContext({
        task_id: this.input.task_id,
        sandbox: s.provision!.sandbox,
        goal: this.input.spec.goal,
        context_files: this.input.spec.context_files,
        planner,
        policy: s.policy,
      });
      a.check_commands = ctx.check_commands;
      this.trace('agent', `agent ready: ${planner.provider} ${planner.model}`, {
        check_commands: ctx.check_commands,
        agents_md: ctx.agents_md,
        context_files: ctx.context_files_read,
      });
    }

    for (;;) {
      if (this.shouldContinueAsNew()) return 'continue';
      await this.flushTrace();
      if (a.calls.length > 0) {
        const end = await this.handleToolCall(planner, a, a.calls[0]!);
        if (end) return end;
        a.calls.shift();
        continue;
      }
      if (a.results.length > 0) {
        // Tool results answer the reply's calls and must follow it directly; notes made meanwhile come after.
        a.pending.unshift({ role: 'tool', results: a.results });
        a.results = [];
      }
      if (a.finish) {
        const verdict = await this.selfCheck(planner, a);
        if (verdict === 'passed') return undefined;
        if (verdict !== 'failed') return verdict;
        continue;
      }

      await this.ensureModelBudget(planner, a);
      this.setState(a.planned ? 'running' : 'planning');
      let reply;
      try {
        reply = await modelActs.agentModelCall({
          task_id: this.input.task_id,
          provider: planner.provider,
          model: planner.model,
          turn: a.turn + 1,
          append: a.pending,
          max_output_tokens: planner.max_output_tokens,
        });
      } catch (err) {
        if (!(err instanceof ActivityFailure) || isCancellation(err)) throw err;
        const cause = err.cause instanceof ApplicationFailure ? err.cause : null;
        if (cause?.nonRetryable) return { state: 'failed', result: `the model call failed: ${describeFailure(err)}` };
        const item = this.raise('health_alert', `Model calls keep failing: ${preview(describeFailure(err), 100)}`, 'stuck', {
          reason: 'model_unavailable',
          error: preview(describeFailure(err), 2_000),
          hint: 'send a message to try again, or cancel the task',
        });
        await this.waitFor(item);
        continue;
      }
      a.turn += 1;
      a.pending = [];
      a.context_tokens = reply.context_tokens;
      a.last_call_usd = reply.usd;
      s.usage.tokens += reply.usage.prompt_tokens + reply.usage.output_tokens;
      s.usage.usd = Math.round((s.usage.usd + reply.usd) * 1e6) / 1e6;
      this.trace('model', preview(reply.text, 300) || `${reply.tool_calls.length} tool call(s)`, {
        turn: a.turn,
        tool_calls: reply.tool_calls.map((c) => c.name),
        prompt_tokens: reply.usage.prompt_tokens,
        output_tokens: reply.usage.output_tokens,
        cached_tokens: reply.usage.cached_tokens,
        usd: reply.usd,
        priced: reply.priced,
        finish_reason: reply.finish_reason,
        totals: { tokens: s.usage.tokens, usd: s.usage.usd },
      });
      this.publishVisibility();

      if (!a.planned) {
        a.plan = reply.text.trim() || null;
        this.trace('plan', a.plan ? preview(a.plan, 2_000) : 'the model gave no plan');
        if (s.policy.require_plan_approval) {
          const item = this.raise('plan_approval', `Approve the plan: ${preview(this.input.spec.goal, 100)}`, 'awaiting_approval', {
            goal: preview(this.input.spec.goal, 2_000),
            plan: preview(a.plan ?? '', 4_000),
          });
          const r = await this.waitFor(item);
          if (r.action === 'reject') return { state: 'rejected', result: `plan rejected by ${r.actor}` };
          if (r.action === 'request_changes') {
            // The reply's tool calls (if any) are dropped with the plan: the model plans again first.
            a.pending.push({ role: 'user', text: `The plan was not approved. ${r.actor} asks: ${r.comment ?? '(no comment)'}\nReply with a revised plan (text only).` });
            this.skipCalls(a, reply.tool_calls, 'the plan was sent back for changes; plan again first');
            continue;
          }
        }
        a.planned = true;
        if (reply.tool_calls.length === 0) {
          a.pending.push({ role: 'user', text: 'Go ahead with the plan, using the tools.' });
          continue;
        }
      }
      if (reply.tool_calls.length === 0) {
        a.idle_replies += 1;
        if (a.idle_replies >= 3) {
          const item = this.raise('health_alert', 'Stuck: the agent replies without using its tools', 'stuck', {
            reason: 'no_tool_calls',
            last_reply: preview(reply.text, 2_000),
            finish_reason: reply.finish_reason,
            hint: 'send a message to guide the agent, or cancel the task',
          });
          const r = await this.waitFor(item);
          a.idle_replies = 0;
          a.pending.push({ role: 'user', text: `Message from ${r.actor}: ${r.comment ?? ''}` });
          continue;
        }
        a.pending.push({ role: 'user', text: 'Use the tools to continue, or call finish when the goal is met.' });
        continue;
      }
      a.idle_replies = 0;
      a.calls = reply.tool_calls;
    }
  }

  /** Answer calls the loop will not run (their results must still reach the model, one per call). */
  private skipCalls(a: AgentState, calls: ToolCall[], why: string): void {
    if (calls.length === 0) return;
    a.pending.unshift({ role: 'tool', results: calls.map((c) => ({ id: c.id, name: c.name, output: `not run: ${why}` })) });
  }

  /** One tool call of the model, through the policy's gates; its result goes to `a.results`. */
  private async handleToolCall(planner: LlmPlanner, a: AgentState, call: ToolCall): Promise<End | undefined> {
    const s = this.s;
    const answer = (output: string): undefined => {
      a.results.push({ id: call.id, name: call.name, output });
      return undefined;
    };
    if (call.args === null) return answer(`error: the arguments were not a JSON object (${call.parse_error ?? 'unparseable'}); call ${call.name} again with valid JSON arguments`);
    const v = validateToolArgs(call.name, call.args);
    if (!v.ok) return answer(`error: ${v.error}`);

    if (v.name === 'finish') {
      a.finish = { summary: v.args.summary, risks: v.args.risks, how_to_test: v.args.how_to_test };
      this.trace('agent', `finish: ${preview(v.args.summary, 300)}`);
      return answer('finish received: the checks run next');
    }
    if (v.name === 'ask_human') {
      const item = this.raise('clarification', `Question: ${preview(v.args.question, 100)}`, 'awaiting_answer', {
        question: preview(v.args.question, 4_000),
        turn: a.turn,
      });
      const r = await this.waitFor(item);
      return answer(`${r.actor} answered: ${r.answer ?? r.comment ?? '(no answer)'}`);
    }
    if (v.name === 'request_approval') {
      const item = this.raise('risky_action', `Approve: ${preview(v.args.action, 100)}`, 'awaiting_approval', {
        reason: 'the agent asked for approval',
        action: preview(v.args.action, 4_000),
        why: preview(v.args.reason, 4_000),
      });
      const r = await this.waitFor(item);
      return answer(r.action === 'approve' ? `approved by ${r.actor}${r.comment ? `: ${r.comment}` : ''}` : `rejected by ${r.actor}${r.comment ? `: ${r.comment}` : ''}; do not do it`);
    }
    if (!isSandboxTool(v.name)) return answer(`error: unknown tool ${call.name}`);

    // Policy gates, in code: what the model says cannot skip them.
    if (v.name === 'run') {
      const pattern = commandNeedingApproval(s.policy, v.args.command);
      if (pattern !== null) {
        const item = this.raise('risky_action', `Run command: ${preview(v.args.command, 100)}`, 'awaiting_approval', {
          reason: 'command matches an approval pattern',
          command: preview(v.args.command, 4_000),
          matched: pattern,
          turn: a.turn,
        });
        const r = await this.waitFor(item);
        if (r.action !== 'approve') return answer(`not run: ${r.actor} rejected this command${r.comment ? `: ${r.comment}` : ''}`);
      }
    }
    let approvedPaths: string[] = [];
    if (v.name === 'write_file' || v.name === 'edit_file') {
      const touched = protectedPathsTouched(s.policy, [v.args.path]);
      if (touched.length > 0) {
        const item = this.raise('risky_action', `Change protected path: ${touched[0]}`, 'awaiting_approval', {
          reason: 'change touches protected paths',
          paths: touched,
          tool: v.name,
          preview: preview(v.name === 'write_file' ? v.args.content : `- ${v.args.old_string}\n+ ${v.args.new_string}`, 4_000),
          turn: a.turn,
        });
        const r = await this.waitFor(item);
        if (r.action !== 'approve') return answer(`not done: ${r.actor} rejected the change to ${touched[0]}${r.comment ? `: ${r.comment}` : ''}`);
        approvedPaths = touched;
      }
    }

    await this.ensureStepBudget();
    this.setState('running');
    const res = await this.runAgentTool(call);
    if (res === null) return answer('error: the tool could not run (see the health alert); try again');
    s.usage.steps += 1;
    const before = s.checkpoint!;
    // What the call actually changed is gated too: a command, or a link, can reach a protected path the arguments did not name.
    const touched = protectedPathsTouched(s.policy, res.changed_paths).filter((p) => !approvedPaths.includes(p));
    if (touched.length > 0) {
      const diffName = `protected-${s.round}-t${a.turn}-${call.id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}`;
      const r = await this.gateProtectedChange(before, res.checkpoint, touched, diffName, call.name, { tool: call.name, turn: a.turn });
      if (r.action !== 'approve') {
        // The checkpoint stays where it was: the next tool call restores the tree before this one.
        a.tree_unsure = true;
        return answer(`${res.output}\n\n[the change to ${touched.join(', ')} was rejected by ${r.actor}${r.comment ? `: ${r.comment}` : ''}; it has been undone]`);
      }
    }
    const progressed = res.checkpoint !== s.checkpoint;
    s.checkpoint = res.checkpoint;
    if (progressed) s.idle_since = new Date().toISOString();
    this.trace('tool', `${call.name}${v.name === 'run' ? ` \`${preview(v.args.command, 120)}\`` : 'path' in v.args && v.args.path ? ` ${v.args.path}` : ''} → ${res.ok ? 'ok' : 'failed'}`, {
      turn: a.turn,
      exit_code: res.exit_code,
      timed_out: res.timed_out,
      changed_paths: res.changed_paths.slice(0, 50),
      output_preview: preview(res.output, 500),
    });

    // No progress: the same command failing again and again, or many calls that change nothing.
    if (v.name === 'run' && !res.ok) {
      const failure = `${v.args.command}\n${preview(res.output, 1_000)}`;
      a.repeat_failures = a.last_failure?.split('\n', 1)[0] === v.args.command ? a.repeat_failures + 1 : 1;
      a.last_failure = failure;
    } else if (v.name === 'run') {
      a.repeat_failures = 0;
    }
    a.no_progress = progressed ? 0 : a.no_progress + 1;
    if (a.repeat_failures >= AGENT_REPEAT_FAILURES || a.no_progress >= AGENT_NO_PROGRESS_CALLS) {
      const why = a.repeat_failures >= AGENT_REPEAT_FAILURES ? `the same command failed ${a.repeat_failures} times in a row` : `${a.no_progress} tool calls changed nothing`;
      const item = this.raise('health_alert', `Stuck: ${why}`, 'stuck', {
        reason: 'no_progress',
        detail: why,
        last_error: preview(a.last_failure ?? '', 2_000),
        hint: 'send a message to guide the agent (it continues with it), or cancel the task',
      });
      const r = await this.waitFor(item);
      a.repeat_failures = 0;
      a.no_progress = 0;
      a.pending.push({ role: 'user', text: `Message from ${r.actor}: ${r.comment ?? ''}` });
    }
    return answer(res.output);
  }

  /** Runs one sandbox tool; an activity that keeps failing opens a health alert and returns null. */
  private async runAgentTool(call: ToolCall): Promise<AgentToolCallResult | null> {
    const s = this.s;
    try {
      const a = s.agent!;
      const res = await toolActs.agentToolCall({
        task_id: this.input.task_id,
        sandbox: s.provision!.sandbox,
        call,
        checkpoint: s.checkpoint!,
        default_timeout_seconds: AGENT_RUN_TIMEOUT_SECONDS,
        max_timeout_seconds: AGENT_RUN_MAX_TIMEOUT_SECONDS,
        verify: a.tree_unsure !== false,
      });
      a.tree_unsure = false;
      return res;
    } catch (err) {
      if (!(err instanceof ActivityFailure) || isCancellation(err)) throw err;
      s.agent!.tree_unsure = true;
      const item = this.raise('health_alert', `Tool ${call.name} could not run: ${preview(describeFailure(err), 100)}`, 'stuck', {
        reason: 'activity_failed',
        tool: call.name,
        error: preview(describeFailure(err), 2_000),
        hint: 'send a message to continue (the agent is told the tool failed), or cancel the task',
      });
      await this.waitFor(item);
      return null;
    }
  }

  /** Runs the checks after `finish`: 'passed', 'failed' (the agent is told and goes on), or an End. */
  private async selfCheck(planner: LlmPlanner, a: AgentState): Promise<'passed' | 'failed' | End> {
    const failures: string[] = [];
    for (const [i, command] of (a.check_commands ?? []).entries()) {
      await this.ensureStepBudget();
      this.setState('running');
      const res = await this.runAgentTool({ id: `check-${a.turn}-${i}`, name: 'run', args: { command, timeout_seconds: AGENT_RUN_MAX_TIMEOUT_SECONDS } });
      if (res === null) return 'failed';
      this.s.usage.steps += 1;
      this.s.checkpoint = res.checkpoint;
      this.trace('check', `\`${preview(command, 120)}\` ${res.ok ? 'passed' : `failed (exit ${res.exit_code ?? '?'})`}`, { turn: a.turn, exit_code: res.exit_code, output_preview: preview(res.output, 500) });
      if (!res.ok) failures.push(`\`${command}\` exited ${res.exit_code ?? '?'}:\n${res.output}`);
    }
    if (failures.length === 0) return 'passed';
    a.finish = null;
    a.check_failures += 1;
    if (a.check_failures >= planner.max_check_rounds) {
      const item = this.raise('health_alert', `Self-check failed ${a.check_failures} times`, 'stuck', {
        reason: 'self_check_failed',
        failures: failures.map((f) => preview(f, 2_000)),
        hint: 'send a message to let the agent try again with your guidance, or cancel the task',
      });
      const r = await this.waitFor(item);
      a.check_failures = 0;
      a.pending.push({ role: 'user', text: `The checks failed again. Message from ${r.actor}: ${r.comment ?? ''}\n\n${failures.join('\n\n')}` });
      return 'failed';
    }
    a.pending.push({ role: 'user', text: `The checks failed (round ${a.check_failures} of ${planner.max_check_rounds}); fix the cause, then call finish again.\n\n${failures.join('\n\n')}` });
    return 'failed';
  }

  /**
   * Parks on a `budget_request` while the next model call could take the task past its token or
   * dollar budget (estimated from the conversation's size and the last call's cost); a grant
   * continues the same conversation.
   */
  private async ensureModelBudget(planner: LlmPlanner, a: AgentState): Promise<void> {
    const s = this.s;
    for (;;) {
      const nextTokens = a.context_tokens + planner.max_output_tokens;
      const overTokens = s.usage.tokens + nextTokens > s.budget.max_tokens;
      const overUsd = s.usage.usd + a.last_call_usd > s.budget.max_usd;
      if (!overTokens && !overUsd) return;
      const what = overTokens ? 'max_tokens' : 'max_usd';
      const title = overTokens
        ? `Token budget would be exceeded (${s.usage.tokens} used, next call about ${nextTokens}, budget ${s.budget.max_tokens})`
        : `Dollar budget would be exceeded ($${s.usage.usd.toFixed(4)} used, next call about $${a.last_call_usd.toFixed(4)}, budget $${s.budget.max_usd})`;
      const item = this.raise('budget_request', title, 'awaiting_budget', {
        exhausted: what,
        usage: { ...s.usage },
        budget: { ...s.budget },
        next_call_estimate: { tokens: nextTokens, usd: a.last_call_usd },
        hint: `grant_budget with {"${what}": N} to continue the same conversation, or cancel`,
      });
      await this.waitFor(item);
    }
  }

  /**
   * Opens a `risky_action` item showing what a change did to protected paths (the diff between two
   * checkpoints, limited to those paths) and waits for the human's decision.
   */
  private async gateProtectedChange(
    from: string,
    to: string,
    touched: string[],
    diffName: string,
    what: string,
    detail: Record<string, unknown>,
  ): Promise<Resolution> {
    const d = await io.diffCheckpoints({ task_id: this.input.task_id, sandbox: this.s.provision!.sandbox, from, to, paths: touched, name: diffName });
    const item = this.raise('risky_action', `${what} changed protected paths: ${touched.slice(0, 3).join(', ')}`, 'awaiting_approval', {
      reason: 'change touches protected paths',
      ...detail,
      paths: touched.slice(0, 100),
      diff_stat: preview(d.stat, 2_000),
      diff_preview: d.preview,
      diff_ref: d.diff.ref,
    });
    return this.waitFor(item);
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
      // The agent's output is its last accepted checkpoint: a change a human rejected is not in it.
      ...(spec.planner.kind === 'llm' ? { tree: s.checkpoint! } : {}),
    });
    if (!pub.changed && !s.pushed) {
      return { state: 'done', result: `the ${spec.planner.kind === 'llm' ? 'agent' : 'recipe'} changed nothing; no branch was pushed` };
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
    const planner = spec.planner;
    const how =
      planner.kind === 'recipe'
        ? ['Recipe:', ...planner.steps.map((st, i) => `- ${st.name ?? `step ${i + 1}`}: ${preview(st.run, 200)}`)]
        : [`Summary (${planner.provider} ${planner.model}):`, preview(s.agent?.finish?.summary ?? '', 4_000)];
    const lines = [preview(firstLine(spec.goal), 72), '', preview(spec.goal, 4_000), '', ...how];
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
    const finish = s.agent?.finish ?? null;
    if (finish?.risks.trim()) risks.push(`- stated by the agent: ${preview(finish.risks.trim(), 2_000)}`);
    if (risks.length === 0) risks.push('- none flagged by policy');
    const planner = spec.planner;
    const howTo = [
      `- \`git fetch origin ${s.branch ?? `agent/${this.input.task_id}`} && git checkout FETCH_HEAD\``,
      ...(planner.kind === 'recipe'
        ? planner.steps.map((st) => `- \`${preview(st.run, 200)}\``)
        : [...(s.agent?.check_commands ?? []).map((c) => `- \`${preview(c, 200)}\``), ...(finish?.how_to_test.trim() ? [preview(finish.how_to_test.trim(), 2_000)] : [])]),
    ];
    return [
      '## Goal',
      preview(spec.goal, 2_000),
      '',
      ...(finish ? ['## Summary', preview(finish.summary, 4_000), ''] : []),
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
      // The final record goes after the last trace entry; histories recorded before it skip it on replay.
      if (patched('task-record')) await this.writeRecord();
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

  /** Writes the task's final record; a failure is logged, never a reason to fail a task that has ended. */
  private async writeRecord(): Promise<void> {
    try {
      await io.writeTaskRecord({ task_id: this.input.task_id, view: this.view(), first_index: this.s.trace_offset, entries: this.s.trace });
    } catch (err) {
      log.error('task record not written', { task_id: this.input.task_id, error: String(err) });
    }
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
