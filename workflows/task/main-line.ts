/**
 * The task's main line: provision, plan, work, publish, review — and again on request_changes.
 */
import { workflowInfo } from '@temporalio/workflow';
import { runAgent } from './agent/loop';
import { awaitReview, publish } from './output';
import { provision } from './provision';
import { planRecipe, runRecipeStep } from './recipe';
import { runSetup, setupPending } from './setup';
import type { End, TaskRun } from './state';
import { flushTrace } from './visibility';

/** Runs the task to its end, or returns 'continue' at a safe point when history is long. */
export async function mainLine(t: TaskRun): Promise<End | 'continue'> {
  const s = t.s;
  const planner = t.input.spec.planner;
  if (!s.provision) await provision(t);
  if (planner.kind === 'recipe' && !s.planned) {
    const end = await planRecipe(t, planner);
    if (end) return end;
  }
  // After a recipe's plan is approved (nothing is installed for a plan a human rejects), before any planner step.
  if (setupPending(t)) {
    const end = await runSetup(t);
    if (end) return end;
  }
  for (;;) {
    if (workflowInfo().continueAsNewSuggested) return 'continue';
    await flushTrace(t);
    if (s.phase === 'steps') {
      if (planner.kind === 'llm') {
        const end = await runAgent(t, planner);
        if (end !== undefined) return end;
        s.phase = 'publish';
      } else if (s.step_index < planner.steps.length) {
        const end = await runRecipeStep(t, planner, s.step_index);
        if (end) return end;
        s.step_index += 1;
        continue;
      } else {
        s.phase = 'publish';
      }
    }
    if (s.phase === 'publish') {
      const end = await publish(t);
      if (end) return end;
    }
    if (s.phase === 'review') {
      const end = await awaitReview(t);
      if (end) return end;
    }
  }
}
