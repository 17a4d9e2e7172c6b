/**
 * The LLM planner's loop: model call → tool calls → results back → … → finish → self-check. The
 * conversation lives in the artifact store; the state carries turn numbers and what the gates need.
 */
import { allowFor } from '../egress';
import { ActivityFailure, ApplicationFailure, isCancellation, workflowInfo } from '@temporalio/workflow';
import type { AgentModelCallResult } from '../../../activities/llm/agent';
import type { ToolCall } from '../../../activities/llm/types';
import { preview } from '../../../domain/rules';
import type { LlmPlanner } from '../../../domain/task';
import { raise, waitFor } from '../inbox';
import { ensureModelBudget } from '../limits';
import { describeFailure, modelActs } from '../proxies';
import { onSandbox } from '../sandbox';
import { newAgentState, type AgentState, type End, type TaskRun } from '../state';
import { flushTrace, publishVisibility, setState, trace } from '../visibility';
import { selfCheck } from './check';
import { handleToolCall } from './tools';

/** Replies in a row with neither a tool call nor finish before the task is reported stuck. */
const IDLE_REPLIES_STUCK = 3;

/**
 * Runs the agent until it finished and its checks passed (undefined: publish next), a human or a
 * failure ends the task (an End), or history is long ('continue', at a safe point).
 */
export async function runAgent(t: TaskRun, planner: LlmPlanner): Promise<End | 'continue' | undefined> {
  const a = (t.s.agent ??= newAgentState());
  if (a.check_commands === null) await startAgent(t, planner, a);
  for (;;) {
    if (workflowInfo().continueAsNewSuggested) return 'continue';
    await flushTrace(t);
    if (a.calls.length > 0) {
      const end = await handleToolCall(t, a, a.calls[0]!);
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
      const verdict = await selfCheck(t, planner, a);
      if (verdict === 'passed') return undefined;
      if (verdict !== 'failed') return verdict;
      continue;
    }
    await ensureModelBudget(t, planner, a);
    const reply = await callModel(t, planner, a);
    if (reply === null) continue;
    if ('state' in reply) return reply;
    const end = await takeReply(t, a, reply);
    if (end) return end;
  }
}

/** Builds the agent's context (system prompt, AGENTS.md, context files) and learns its check commands and first-call estimate. */
async function startAgent(t: TaskRun, planner: LlmPlanner, a: AgentState): Promise<void> {
  const s = t.s;
  setState(t, 'planning');
  const ctx = await onSandbox(t, 'io', (acts, sandbox) => acts.agentContext({
    task_id: t.input.task_id,
    sandbox,
    goal: t.input.spec.goal,
    context_files: t.input.spec.context_files,
    planner,
    // The model is told the hosts it may reach: the task's allowlist within the operator's ceiling, grants included.
    policy: { ...s.policy, egress_allowlist: allowFor(t, 'planner') },
  }));
  a.check_commands = ctx.check_commands;
  if (ctx.first_prompt_tokens !== undefined) a.first_prompt_tokens = ctx.first_prompt_tokens;
  if (ctx.price !== undefined) a.price = ctx.price;
  trace(t, 'agent', `agent ready: ${planner.provider} ${planner.model}`, {
    check_commands: ctx.check_commands,
    agents_md: ctx.agents_md,
    context_files: ctx.context_files_read,
  });
}

/** One model call, metered: the reply, an End when the call cannot succeed, or null after a human answered a failing one. */
async function callModel(t: TaskRun, planner: LlmPlanner, a: AgentState): Promise<AgentModelCallResult | End | null> {
  const s = t.s;
  setState(t, a.planned ? 'running' : 'planning');
  let reply;
  try {
    reply = await modelActs.agentModelCall({
      task_id: t.input.task_id,
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
    const item = raise(t, 'health_alert', `Model calls keep failing: ${preview(describeFailure(err), 100)}`, 'stuck', {
      reason: 'model_unavailable',
      error: preview(describeFailure(err), 2_000),
      hint: 'send a message to try again, or cancel the task',
    });
    await waitFor(t, item);
    return null;
  }
  a.turn += 1;
  a.pending = [];
  a.context_tokens = reply.context_tokens;
  a.last_call_usd = reply.usd;
  s.usage.tokens += reply.usage.prompt_tokens + reply.usage.output_tokens;
  s.usage.usd = Math.round((s.usage.usd + reply.usd) * 1e6) / 1e6;
  trace(t, 'model', preview(reply.text, 300) || `${reply.tool_calls.length} tool call(s)`, {
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
  publishVisibility(t);
  return reply;
}

/** Takes a reply: the first is the plan (approved when policy asks); later ones must use the tools. */
async function takeReply(t: TaskRun, a: AgentState, reply: AgentModelCallResult): Promise<End | undefined> {
  const s = t.s;
  if (!a.planned) {
    a.plan = reply.text.trim() || null;
    trace(t, 'plan', a.plan ? preview(a.plan, 2_000) : 'the model gave no plan');
    if (s.policy.require_plan_approval) {
      const item = raise(t, 'plan_approval', `Approve the plan: ${preview(t.input.spec.goal, 100)}`, 'awaiting_approval', {
        goal: preview(t.input.spec.goal, 2_000),
        plan: preview(a.plan ?? '', 4_000),
      });
      const r = await waitFor(t, item);
      if (r.action === 'reject') return { state: 'rejected', result: `plan rejected by ${r.actor}` };
      if (r.action === 'request_changes') {
        // The reply's tool calls (if any) are dropped with the plan: the model plans again first.
        a.pending.push({ role: 'user', text: `The plan was not approved. ${r.actor} asks: ${r.comment ?? '(no comment)'}\nReply with a revised plan (text only).` });
        skipCalls(a, reply.tool_calls, 'the plan was sent back for changes; plan again first');
        return undefined;
      }
    }
    a.planned = true;
    if (reply.tool_calls.length === 0) {
      a.pending.push({ role: 'user', text: 'Go ahead with the plan, using the tools.' });
      return undefined;
    }
  }
  if (reply.tool_calls.length === 0) {
    a.idle_replies += 1;
    if (a.idle_replies >= IDLE_REPLIES_STUCK) {
      const item = raise(t, 'health_alert', 'Stuck: the agent replies without using its tools', 'stuck', {
        reason: 'no_tool_calls',
        last_reply: preview(reply.text, 2_000),
        finish_reason: reply.finish_reason,
        hint: 'send a message to guide the agent, or cancel the task',
      });
      const r = await waitFor(t, item);
      a.idle_replies = 0;
      a.pending.push({ role: 'user', text: `Message from ${r.actor}: ${r.comment ?? ''}` });
      return undefined;
    }
    a.pending.push({ role: 'user', text: 'Use the tools to continue, or call finish when the goal is met.' });
    return undefined;
  }
  a.idle_replies = 0;
  a.calls = reply.tool_calls;
  return undefined;
}

/** Answers calls the loop will not run: their results must still reach the model, one per call. */
function skipCalls(a: AgentState, calls: ToolCall[], why: string): void {
  if (calls.length === 0) return;
  a.pending.unshift({ role: 'tool', results: calls.map((c) => ({ id: c.id, name: c.name, output: `not run: ${why}` })) });
}
