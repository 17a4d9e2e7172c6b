/**
 * One command of a recipe or a setup phase, run until it succeeds: the idle guard around it, and the
 * inbox items that let a human retry it (a health alert) or allow a host its refusals named.
 */
import { ActivityFailure, isCancellation } from '@temporalio/workflow';
import type { RunStepResult } from '../../activities/types';
import { preview } from '../../domain/rules';
import { askToAllow, blockedNote, grantableFrom, grantFor, noteEgress, type EgressPhase } from './egress';
import { withIdleGuard } from './guards';
import { raise, waitFor } from './inbox';
import { ensureStepBudget } from './limits';
import { describeFailure } from './proxies';
import { onSandbox } from './sandbox';
import type { TaskRun } from './state';
import { setState, trace } from './visibility';

/** A command to run in the sandbox, and where it belongs. */
export interface GatedCommand {
  /** Index among its recipe's or setup's commands, and the round (0 for setup) it runs in. */
  index: number;
  round: number;
  label: string;
  command: string;
  timeout_seconds: number;
  /** Whose allowlist its requests go through. */
  phase: EgressPhase;
}

/**
 * Runs `c` on the gated checkpoint until it exits 0, and returns that run. A failure (a non-zero exit,
 * no progress for `max_idle_minutes`, an activity that cannot run) opens a health alert, and a message
 * runs it again; a failure whose refused requests name hosts a human may allow asks that first, and an
 * approval runs it again with them. Cancelling the task ends the wait.
 */
export async function runUntilSuccess(t: TaskRun, c: GatedCommand): Promise<RunStepResult> {
  const s = t.s;
  for (;;) {
    await ensureStepBudget(t);
    setState(t, 'running');
    const attempt = await runStepWithIdleGuard(t, c);
    if (attempt.kind === 'idle') {
      const item = raise(t, 'health_alert', `Stuck: no successful step for ${s.budget.max_idle_minutes} min`, 'stuck', {
        reason: 'idle',
        step: c.index,
        step_name: c.label,
        command: preview(c.command, 1_000),
        hint: 'send a message to retry the step, or cancel the task',
      });
      await waitFor(t, item);
      continue;
    }
    if (attempt.kind === 'error') {
      const item = raise(t, 'health_alert', `Step could not run: ${preview(attempt.message, 120)}`, 'stuck', {
        reason: 'activity_failed',
        step: c.index,
        step_name: c.label,
        error: preview(attempt.message, 2_000),
        hint: 'send a message to retry the step, or cancel the task',
      });
      await waitFor(t, item);
      continue;
    }
    const res = attempt.result;
    s.usage.steps += 1;
    trace(t, 'step', `${c.label} exited ${res.exit_code}${res.timed_out ? ' (timed out)' : ''}`, {
      index: c.index,
      round: c.round,
      exit_code: res.exit_code,
      duration_ms: res.duration_ms,
      output_ref: res.output.ref,
      output_preview: preview(res.output_preview, 500),
      changed_paths: res.changed_paths.slice(0, 50),
    });
    noteEgress(t, res.egress, c.label);
    if (res.exit_code === 0) return res;

    const hosts = grantableFrom(t, c.phase, res.egress);
    if (hosts.length > 0) {
      const r = await askToAllow(t, c.phase, hosts, `${c.label} failed with exit code ${res.exit_code} after the egress proxy refused these hosts`, {
        step: c.index,
        step_name: c.label,
        command: preview(c.command, 1_000),
        exit_code: res.exit_code,
        output_preview: res.output_preview,
        output_ref: res.output.ref,
      });
      // Approved: the step runs again from the same checkpoint, with the hosts allowed.
      if (r.action === 'approve') continue;
    }
    const item = raise(t, 'health_alert', `${c.label} failed with exit code ${res.exit_code}`, 'stuck', {
      reason: res.timed_out ? 'step_timeout' : 'step_failed',
      step: c.index,
      step_name: c.label,
      command: preview(c.command, 1_000),
      exit_code: res.exit_code,
      output_preview: res.output_preview,
      output_ref: res.output.ref,
      ...(res.egress && res.egress.blocked_count > 0 ? { blocked_requests: res.egress.blocked, network: blockedNote(t, res.egress).trim() } : {}),
      hint: 'send a message to retry the step (it runs again on the same working copy), or cancel the task',
    });
    await waitFor(t, item);
  }
}

/** Runs one command; the idle guard cancels it when no step has succeeded for `max_idle_minutes`. */
async function runStepWithIdleGuard(t: TaskRun, c: GatedCommand): Promise<{ kind: 'done'; result: RunStepResult } | { kind: 'idle' } | { kind: 'error'; message: string }> {
  const s = t.s;
  const env: Record<string, string> = { AGENT_TASK_ID: t.input.task_id, AGENT_ROUND: String(s.round) };
  if (s.feedback) env.AGENT_FEEDBACK = s.feedback;
  if (s.last_message) env.AGENT_MESSAGE = s.last_message;
  const egress = grantFor(t, c.phase, c.label);

  try {
    return await withIdleGuard(t, () =>
      onSandbox(t, { step_timeout_seconds: c.timeout_seconds }, (acts, sandbox) =>
        acts.runStep({
        task_id: t.input.task_id,
        sandbox,
        index: c.index,
        round: c.round,
        command: c.command,
        timeout_seconds: c.timeout_seconds,
        checkpoint: s.checkpoint!,
        env,
        egress,
      }),
      ),
    );
  } catch (err) {
    if (err instanceof ActivityFailure && !isCancellation(err)) return { kind: 'error', message: describeFailure(err) };
    throw err;
  }
}
