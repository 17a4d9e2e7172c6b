/**
 * The agent's self-check after `finish`: the check commands run through the same gates as any
 * command, and failures go back to the agent (or to a human after too many rounds).
 */
import { preview } from '../../../domain/rules';
import type { LlmPlanner } from '../../../domain/task';
import { noteEgress } from '../egress';
import { acceptCheckpoint, CHECK_APPROVAL_PATCH, gateCommand, SELF_CHECK_GATE_PATCH } from '../gates';
import { raise, waitFor } from '../inbox';
import { ensureStepBudget } from '../limits';
import { AGENT_RUN_MAX_TIMEOUT_SECONDS } from '../proxies';
import type { AgentState, End, TaskRun } from '../state';
import { setState, trace } from '../visibility';
import { runAgentTool } from './tools';

/**
 * Runs the checks after `finish`: 'passed', 'failed' (the agent is told and goes on), or an End. A check
 * is a command like any other: approval patterns apply before it runs, and what it changed passes the
 * protected-path gate before it can ship.
 */
export async function selfCheck(t: TaskRun, planner: LlmPlanner, a: AgentState): Promise<'passed' | 'failed' | End> {
  const s = t.s;
  const failures: string[] = [];
  for (const [i, command] of (a.check_commands ?? []).entries()) {
    if (!(await approveCheck(t, a, command, i))) continue;
    await ensureStepBudget(t);
    setState(t, 'running');
    const ran = await runAgentTool(t, { id: `check-${a.turn}-${i}`, name: 'run', args: { command, timeout_seconds: AGENT_RUN_MAX_TIMEOUT_SECONDS } });
    if (ran.kind === 'failed') return 'failed';
    if (ran.kind === 'idle') {
      a.finish = null;
      a.pending.push({ role: 'user', text: `The check \`${command}\` was ${ran.note}\nCall finish again when ready.` });
      return 'failed';
    }
    const res = ran.result;
    s.usage.steps += 1;
    noteEgress(t, res.egress, `check ${i + 1} (turn ${a.turn})`);
    const gate = await acceptCheckpoint(t, 
      { from: ran.from, to: res.checkpoint, changed_paths: res.changed_paths, ungatedBefore: SELF_CHECK_GATE_PATCH },
      `protected-${s.round}-check-${a.turn}-${i}`,
      `check \`${preview(command, 60)}\``,
      { check: command, turn: a.turn },
    );
    const undone = gate.accepted ? '' : `; its change to ${gate.touched.join(', ')} was rejected by ${gate.resolution.actor} and is not kept`;
    trace(t, 'check', `\`${preview(command, 120)}\` ${res.ok ? 'passed' : `failed (exit ${res.exit_code ?? '?'})`}${undone}`, { turn: a.turn, exit_code: res.exit_code, output_preview: preview(res.output, 500) });
    if (!res.ok) failures.push(`\`${command}\` exited ${res.exit_code ?? '?'}:\n${res.output}`);
  }
  if (failures.length === 0) return 'passed';
  a.finish = null;
  a.check_failures += 1;
  if (a.check_failures >= planner.max_check_rounds) {
    const item = raise(t, 'health_alert', `Self-check failed ${a.check_failures} times`, 'stuck', {
      reason: 'self_check_failed',
      failures: failures.map((f) => preview(f, 2_000)),
      hint: 'send a message to let the agent try again with your guidance, or cancel the task',
    });
    const r = await waitFor(t, item);
    a.check_failures = 0;
    a.pending.push({ role: 'user', text: `The checks failed again. Message from ${r.actor}: ${r.comment ?? ''}\n\n${failures.join('\n\n')}` });
    return 'failed';
  }
  a.pending.push({ role: 'user', text: `The checks failed (round ${a.check_failures} of ${planner.max_check_rounds}); fix the cause, then call finish again.\n\n${failures.join('\n\n')}` });
  return 'failed';
}

/** Whether check `index` may run: one matching an approval pattern asks a human, once per round. */
async function approveCheck(t: TaskRun, a: AgentState, command: string, index: number): Promise<boolean> {
  const s = t.s;
  const key = `check:${s.round}:${command}`;
  if (s.approved.includes(key)) return true;
  if (a.declined_checks?.includes(key)) {
    trace(t, 'check', `\`${preview(command, 120)}\` not run: rejected earlier this round`, { turn: a.turn });
    return false;
  }
  // Histories recorded before checks were gated ran every check without asking.
  const r = await gateCommand(t, command, 'Run check', { check: index, turn: a.turn }, CHECK_APPROVAL_PATCH);
  if (r === null) return true;
  if (r.action !== 'approve') {
    (a.declined_checks ??= []).push(key);
    trace(t, 'check', `\`${preview(command, 120)}\` not run: rejected by ${r.actor}`, { turn: a.turn });
    return false;
  }
  s.approved.push(key);
  return true;
}
