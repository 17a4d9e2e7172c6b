/**
 * The agent's tool calls: checked against the tool contract, passed through the gates, run in the
 * sandbox under the idle guard, and watched for calls that make no progress.
 */
import { ActivityFailure, isCancellation, patched } from '@temporalio/workflow';
import type { AgentToolCallResult } from '../../../activities/llm/agent';
import type { ToolCall } from '../../../activities/llm/types';
import { preview } from '../../../domain/rules';
import { isSandboxTool, validateToolArgs, type ValidToolCall } from '../../../domain/tool-specs';
import { blockedNote, grantFor, noteEgress, requestNetwork } from '../egress';
import { acceptCheckpoint, gateCommand, gateProtectedWrite } from '../gates';
import { idleLeftMs, withIdleGuard } from '../guards';
import { raise, waitFor } from '../inbox';
import { ensureStepBudget } from '../limits';
import { AGENT_RUN_MAX_TIMEOUT_SECONDS, AGENT_RUN_TIMEOUT_SECONDS, describeFailure } from '../proxies';
import { onSandbox } from '../sandbox';
import type { AgentState, End, TaskRun } from '../state';
import { setState, trace } from '../visibility';

/** The same command failing this many times in a row, or this many calls changing nothing, is "stuck". */
const AGENT_REPEAT_FAILURES = 3;
const AGENT_NO_PROGRESS_CALLS = 15;
/** Patch before which the agent's tool calls ran without the idle guard's timer. */
const AGENT_IDLE_GUARD_PATCH = 'agent-idle-guard';

/** One tool call of the model, through the policy's gates; its result goes to `a.results`. */
export async function handleToolCall(t: TaskRun, a: AgentState, call: ToolCall): Promise<End | undefined> {
  const s = t.s;
  const answer = (output: string): undefined => {
    a.results.push({ id: call.id, name: call.name, output });
    return undefined;
  };
  if (call.args === null) return answer(`error: the arguments were not a JSON object (${call.parse_error ?? 'unparseable'}); call ${call.name} again with valid JSON arguments`);
  const v = validateToolArgs(call.name, call.args);
  if (!v.ok) return answer(`error: ${v.error}`);

  if (v.name === 'finish' || v.name === 'ask_human' || v.name === 'request_approval' || v.name === 'request_network') return answer(await controlTool(t, a, v));
  if (!isSandboxTool(v.name)) return answer(`error: unknown tool ${call.name}`);

  // Policy gates, in code: what the model says cannot skip them.
  if (v.name === 'run') {
    const r = await gateCommand(t, v.args.command, 'Run command', { turn: a.turn });
    if (r && r.action !== 'approve') return answer(`not run: ${r.actor} rejected this command${r.comment ? `: ${r.comment}` : ''}`);
  }
  let approvedPaths: string[] = [];
  if (v.name === 'write_file' || v.name === 'edit_file') {
    const content = v.name === 'write_file' ? v.args.content : `- ${v.args.old_string}\n+ ${v.args.new_string}`;
    const w = await gateProtectedWrite(t, v.args.path, v.name, content, a.turn);
    if ('rejected' in w) {
      const r = w.resolution;
      return answer(`not done: ${r.actor} rejected the change to ${w.rejected}${r.comment ? `: ${r.comment}` : ''}`);
    }
    approvedPaths = w.approved;
  }

  await ensureStepBudget(t);
  setState(t, 'running');
  const ran = await runAgentTool(t, call);
  if (ran.kind === 'failed') return answer('error: the tool could not run (see the health alert); try again');
  if (ran.kind === 'idle') return answer(ran.note);
  const res = ran.result;
  s.usage.steps += 1;
  noteEgress(t, res.egress, `${call.name} (turn ${a.turn})`);
  // The checkpoint the call started from: what it changed is measured, and gated, against it.
  const before = ran.from;
  // What the call actually changed is gated too: a command, or a link, can reach a protected path the arguments did not name.
  const diffName = `protected-${s.round}-t${a.turn}-${call.id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}`;
  // An approval covers the bytes shown to the human: a path something else rewrote before the checkpoint is gated again.
  const preapproved = res.as_written === undefined ? approvedPaths : approvedPaths.filter((p) => res.as_written!.includes(p));
  const gate = await acceptCheckpoint(t, { from: before, to: res.checkpoint, changed_paths: res.changed_paths, preapproved }, diffName, call.name, { tool: call.name, turn: a.turn });
  if (!gate.accepted) {
    const r = gate.resolution;
    return answer(`${res.output}\n\n[the change to ${gate.touched.join(', ')} was rejected by ${r.actor}${r.comment ? `: ${r.comment}` : ''}; it has been undone]`);
  }
  const progressed = res.checkpoint !== before;
  if (progressed) s.idle_since = new Date().toISOString();
  trace(t, 'tool', `${call.name}${v.name === 'run' ? ` \`${preview(v.args.command, 120)}\`` : 'path' in v.args && v.args.path ? ` ${v.args.path}` : ''} → ${res.ok ? 'ok' : 'failed'}`, {
    turn: a.turn,
    exit_code: res.exit_code,
    timed_out: res.timed_out,
    changed_paths: res.changed_paths.slice(0, 50),
    output_preview: preview(res.output, 500),
  });

  await noteProgress(t, a, v.name === 'run' ? v.args.command : null, res, progressed);
  return answer(`${res.output}${blockedNote(t, res.egress)}`);
}
/** A tool the workflow answers itself: finish, a question for a human, or an approval request; returns what the model is told. */
async function controlTool(t: TaskRun, a: AgentState, v: ValidToolCall<'finish' | 'ask_human' | 'request_approval' | 'request_network'>): Promise<string> {
  if (v.name === 'request_network') return requestNetwork(t, v.args.domain, v.args.reason, a.turn);
  if (v.name === 'finish') {
    a.finish = { summary: v.args.summary, risks: v.args.risks, how_to_test: v.args.how_to_test };
    trace(t, 'agent', `finish: ${preview(v.args.summary, 300)}`);
    return 'finish received: the checks run next';
  }
  if (v.name === 'ask_human') {
    const item = raise(t, 'clarification', `Question: ${preview(v.args.question, 100)}`, 'awaiting_answer', {
      question: preview(v.args.question, 4_000),
      turn: a.turn,
    });
    const r = await waitFor(t, item);
    return `${r.actor} answered: ${r.answer ?? r.comment ?? '(no answer)'}`;
  }
  const item = raise(t, 'risky_action', `Approve: ${preview(v.args.action, 100)}`, 'awaiting_approval', {
    reason: 'the agent asked for approval',
    action: preview(v.args.action, 4_000),
    why: preview(v.args.reason, 4_000),
  });
  const r = await waitFor(t, item);
  return r.action === 'approve' ? `approved by ${r.actor}${r.comment ? `: ${r.comment}` : ''}` : `rejected by ${r.actor}${r.comment ? `: ${r.comment}` : ''}; do not do it`;
}

/** Counts calls that changed nothing and the same command failing in a row; too many opens a `stuck` alert. */
async function noteProgress(t: TaskRun, a: AgentState, command: string | null, res: AgentToolCallResult, progressed: boolean): Promise<void> {
  if (command !== null && !res.ok) {
    const failure = `${command}\n${preview(res.output, 1_000)}`;
    a.repeat_failures = a.last_failure?.split('\n', 1)[0] === command ? a.repeat_failures + 1 : 1;
    a.last_failure = failure;
  } else if (command !== null) {
    a.repeat_failures = 0;
  }
  a.no_progress = progressed ? 0 : a.no_progress + 1;
  if (a.repeat_failures >= AGENT_REPEAT_FAILURES || a.no_progress >= AGENT_NO_PROGRESS_CALLS) {
    const why = a.repeat_failures >= AGENT_REPEAT_FAILURES ? `the same command failed ${a.repeat_failures} times in a row` : `${a.no_progress} tool calls changed nothing`;
    const item = raise(t, 'health_alert', `Stuck: ${why}`, 'stuck', {
      reason: 'no_progress',
      detail: why,
      last_error: preview(a.last_failure ?? '', 2_000),
      hint: 'send a message to guide the agent (it continues with it), or cancel the task',
    });
    const r = await waitFor(t, item);
    a.repeat_failures = 0;
    a.no_progress = 0;
    a.pending.push({ role: 'user', text: `Message from ${r.actor}: ${r.comment ?? ''}` });
  }
}

/**
 * Runs one sandbox tool under the idle guard. An activity that keeps failing opens a health alert
 * ('failed'); no progress for `max_idle_minutes` stops the call and opens a `stuck` alert ('idle',
 * with what to tell the model once a human answered).
 */
export async function runAgentTool(
  t: TaskRun,
  call: ToolCall,
): Promise<{ kind: 'done'; from: string; result: AgentToolCallResult } | { kind: 'failed' } | { kind: 'idle'; note: string }> {
  const s = t.s;
  const a = s.agent!;
  const input = {
    task_id: t.input.task_id,
    sandbox: s.provision!.sandbox,
    call,
    checkpoint: s.checkpoint!,
    default_timeout_seconds: AGENT_RUN_TIMEOUT_SECONDS,
    max_timeout_seconds: AGENT_RUN_MAX_TIMEOUT_SECONDS,
    verify: a.tree_unsure !== false,
  };
  // Only commands may reach the network, and only what the planner's allowlist and a human's grants admit.
  const egress = call.name === 'run' ? grantFor(t, 'planner', `${call.id.startsWith('check-') ? 'check' : 'run'} (turn ${a.turn})`) : null;
  if (egress !== null) Object.assign(input, { egress });
  // A re-provisioned sandbox (released, or its worker lost) is checked against the checkpoint, not trusted.
  const toolCall = () => onSandbox(t, 'tool', (acts, sandbox) => acts.agentToolCall({ ...input, sandbox, verify: a.tree_unsure !== false }));
  try {
    // Histories recorded before the agent had an idle guard scheduled no timer around a tool call.
    if (!patched(AGENT_IDLE_GUARD_PATCH)) {
      const result = await toolCall();
      a.tree_unsure = false;
      return { kind: 'done', from: input.checkpoint, result };
    }
    const guarded = idleLeftMs(t) <= 0 ? ({ kind: 'idle' } as const) : await withIdleGuard(t, toolCall);
    if (guarded.kind === 'done') {
      a.tree_unsure = false;
      return { kind: 'done', from: input.checkpoint, result: guarded.result };
    }
    // A stopped command may have left part of its change: the next call starts from the checkpoint.
    a.tree_unsure = true;
    const minutes = s.budget.max_idle_minutes;
    const item = raise(t, 'health_alert', `Stuck: no tool call made progress for ${minutes} min`, 'stuck', {
      reason: 'idle',
      tool: call.name,
      call: preview(JSON.stringify(call.args ?? {}), 1_000),
      turn: a.turn,
      hint: 'send a message to guide the agent (it continues with it), or cancel the task',
    });
    const r = await waitFor(t, item);
    return { kind: 'idle', note: `stopped: no tool call made progress for ${minutes} min, so ${call.name} was not run to the end. Message from ${r.actor}: ${r.comment ?? ''}` };
  } catch (err) {
    if (!(err instanceof ActivityFailure) || isCancellation(err)) throw err;
    a.tree_unsure = true;
    const item = raise(t, 'health_alert', `Tool ${call.name} could not run: ${preview(describeFailure(err), 100)}`, 'stuck', {
      reason: 'activity_failed',
      tool: call.name,
      error: preview(describeFailure(err), 2_000),
      hint: 'send a message to continue (the agent is told the tool failed), or cancel the task',
    });
    await waitFor(t, item);
    return { kind: 'failed' };
  }
}
