/**
 * The recipe planner: a fixed list of commands, each run through the gates in order.
 */
import { preview } from '../../domain/rules';
import type { RecipePlanner } from '../../domain/task';
import { runUntilSuccess } from './command';
import { acceptCheckpoint, gateCommand } from './gates';
import { raise, waitFor } from './inbox';
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

  const before = s.checkpoint!;
  const res = await runUntilSuccess(t, { index, round: s.round, label, command: step.run, timeout_seconds: step.timeout_seconds, phase: 'planner' });
  s.idle_since = new Date().toISOString();
  s.step_outputs = [
    ...s.step_outputs.filter((o) => o.index !== index),
    { index, name: label, exit_code: res.exit_code, preview: preview(res.output_preview, 600), output_ref: res.output.ref },
  ].slice(-20);
  const gate = await acceptCheckpoint(t, { from: before, to: res.checkpoint, changed_paths: res.changed_paths }, `protected-${s.round}-${index}`, label, { step: index, step_name: label });
  if (!gate.accepted) return { state: 'rejected', result: `change to protected paths rejected by ${gate.resolution.actor}` };
  return undefined;
}

