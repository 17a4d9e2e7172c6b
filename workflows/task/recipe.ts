/**
 * The recipe planner: a fixed list of commands, each run through the gates in order.
 */
import { ActivityFailure, isCancellation } from '@temporalio/workflow';
import type { RunStepResult } from '../../activities/types';
import { preview } from '../../domain/rules';
import type { RecipePlanner } from '../../domain/task';
import { acceptCheckpoint, gateCommand } from './gates';
import { withIdleGuard } from './guards';
import { raise, waitFor } from './inbox';
import { ensureStepBudget } from './limits';
import { describeFailure, stepActs } from './proxies';
import type { End, TaskRun } from './state';
import { setState, trace } from './visibility';

/** Shows the recipe as the plan and, when policy asks, waits for a human to approve it. */
export async function planRecipe(t: TaskRun, planner: RecipePlanner): Promise<End | undefined> {
  const s = t.s;
  const spec = t.input.spec;
  const steps = planner.steps;
  setState(t, 'planning');
  trace(t, 'plan', `recipe of ${steps.length} step(s)`, {
    steps: steps.map((st, i) => st.name ?? `step ${i + 1}: ${preview(st.run, 120)}`),
  });
  if (s.policy.require_plan_approval) {
    const item = raise(t, 'plan_approval', `Approve the plan: ${preview(spec.goal, 100)}`, 'awaiting_approval', {
      goal: preview(spec.goal, 2_000),
      steps: steps.map((st) => ({ name: st.name ?? null, run: preview(st.run, 500) })),
    });
    const r = await waitFor(t, item);
    if (r.action === 'reject') return { state: 'rejected', result: `plan rejected by ${r.actor}` };
  }
  s.planned = true;
  return undefined;
}

/** Runs recipe step `index` through its gates; returns an End when a human stops the task there. */
export async function runRecipeStep(t: TaskRun, planner: RecipePlanner, index: number): Promise<End | undefined> {
  const s = t.s;
  const step = planner.steps[index]!;
  const label = step.name ?? `step ${index + 1}`;
  const key = `${s.round}:${index}`;

  if (!s.approved.includes(key)) {
    const r = await gateCommand(t, step.run, 'Run command', { step: index, step_name: label });
    if (r?.action === 'reject') return { state: 'rejected', result: `command of ${label} rejected by ${r.actor}` };
    if (r) s.approved.push(key);
  }

  for (;;) {
    await ensureStepBudget(t);
    setState(t, 'running');
    const before = s.checkpoint!;
    const attempt = await runStepWithIdleGuard(t, index, step.run, step.timeout_seconds);
    if (attempt.kind === 'idle') {
      const item = raise(t, 'health_alert', `Stuck: no successful step for ${s.budget.max_idle_minutes} min`, 'stuck', {
        reason: 'idle',
        step: index,
        step_name: label,
        command: preview(step.run, 1_000),
        hint: 'send a message to retry the step, or cancel the task',
      });
      await waitFor(t, item);
      continue;
    }
    if (attempt.kind === 'error') {
      const item = raise(t, 'health_alert', `Step could not run: ${preview(attempt.message, 120)}`, 'stuck', {
        reason: 'activity_failed',
        step: index,
        step_name: label,
        error: preview(attempt.message, 2_000),
        hint: 'send a message to retry the step, or cancel the task',
      });
      await waitFor(t, item);
      continue;
    }
    const res = attempt.result;
    s.usage.steps += 1;
    trace(t, 'step', `${label} exited ${res.exit_code}${res.timed_out ? ' (timed out)' : ''}`, {
      index,
      round: s.round,
      exit_code: res.exit_code,
      duration_ms: res.duration_ms,
      output_ref: res.output.ref,
      output_preview: preview(res.output_preview, 500),
      changed_paths: res.changed_paths.slice(0, 50),
    });
    if (res.exit_code !== 0) {
      const item = raise(t, 'health_alert', `${label} failed with exit code ${res.exit_code}`, 'stuck', {
        reason: res.timed_out ? 'step_timeout' : 'step_failed',
        step: index,
        step_name: label,
        command: preview(step.run, 1_000),
        exit_code: res.exit_code,
        output_preview: res.output_preview,
        output_ref: res.output.ref,
        hint: 'send a message to retry the step (it runs again on the same working copy), or cancel the task',
      });
      await waitFor(t, item);
      continue;
    }

    s.idle_since = new Date().toISOString();
    s.step_outputs = [
      ...s.step_outputs.filter((o) => o.index !== index),
      { index, name: label, exit_code: res.exit_code, preview: preview(res.output_preview, 600), output_ref: res.output.ref },
    ].slice(-20);
    const gate = await acceptCheckpoint(t, { from: before, to: res.checkpoint, changed_paths: res.changed_paths }, `protected-${s.round}-${index}`, label, { step: index, step_name: label });
    if (!gate.accepted) return { state: 'rejected', result: `change to protected paths rejected by ${gate.resolution.actor}` };
    return undefined;
  }
}

/** Runs one command; the idle guard cancels it when no step has succeeded for `max_idle_minutes`. */
async function runStepWithIdleGuard(
  t: TaskRun,
  index: number,
  command: string,
  timeoutSeconds: number,
): Promise<{ kind: 'done'; result: RunStepResult } | { kind: 'idle' } | { kind: 'error'; message: string }> {
  const s = t.s;
  const acts = stepActs(timeoutSeconds);
  const env: Record<string, string> = { AGENT_TASK_ID: t.input.task_id, AGENT_ROUND: String(s.round) };
  if (s.feedback) env.AGENT_FEEDBACK = s.feedback;
  if (s.last_message) env.AGENT_MESSAGE = s.last_message;

  try {
    return await withIdleGuard(t, () =>
      acts.runStep({
        task_id: t.input.task_id,
        sandbox: s.provision!.sandbox,
        index,
        round: s.round,
        command,
        timeout_seconds: timeoutSeconds,
        checkpoint: s.checkpoint!,
        env,
      }),
    );
  } catch (err) {
    if (err instanceof ActivityFailure && !isCancellation(err)) return { kind: 'error', message: describeFailure(err) };
    throw err;
  }
}
