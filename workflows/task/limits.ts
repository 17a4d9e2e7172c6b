/**
 * Budgets: the task parks on a `budget_request` before a step or model call would pass one, and a
 * grant raises it.
 */
import type { LlmPlanner, BudgetGrant } from '../../domain/task';
import { raise, waitFor } from './inbox';
import { addMinutes, type AgentState, type TaskRun } from './state';

/** Parks on a `budget_request` while the step budget is spent; a grant raises the limit, cancel ends the task. */
export async function ensureStepBudget(t: TaskRun): Promise<void> {
  const s = t.s;
  while (s.usage.steps >= s.budget.max_steps) {
    const item = raise(t, 'budget_request', `Step budget exhausted (${s.usage.steps}/${s.budget.max_steps})`, 'awaiting_budget', {
      exhausted: 'max_steps',
      usage: { ...s.usage },
      budget: { ...s.budget },
      hint: 'grant_budget with {"max_steps": N} to continue, or cancel',
    });
    await waitFor(t, item);
  }
}

/**
 * Parks on a `budget_request` while the next model call could take the task past its token or
 * dollar budget (estimated from the conversation's size and the last call's cost; before the first
 * call, from the first prompt's estimated size at the model's prices with a full reply); a grant
 * continues the same conversation.
 */
export async function ensureModelBudget(t: TaskRun, planner: LlmPlanner, a: AgentState): Promise<void> {
  const s = t.s;
  for (;;) {
    const nextTokens = a.context_tokens + planner.max_output_tokens;
    // No call has been priced yet: the first prompt's estimated size at the model's list prices, with a full reply.
    const firstUsd = a.turn === 0 && a.first_prompt_tokens !== undefined && a.price ? (a.first_prompt_tokens * a.price.input + planner.max_output_tokens * a.price.output) / 1_000_000 : 0;
    const nextUsd = Math.max(a.last_call_usd, firstUsd);
    const overTokens = s.usage.tokens + nextTokens > s.budget.max_tokens;
    const overUsd = s.usage.usd + nextUsd > s.budget.max_usd;
    if (!overTokens && !overUsd) return;
    const what = overTokens ? 'max_tokens' : 'max_usd';
    const title = overTokens
      ? `Token budget would be exceeded (${s.usage.tokens} used, next call about ${nextTokens}, budget ${s.budget.max_tokens})`
      : `Dollar budget would be exceeded ($${s.usage.usd.toFixed(4)} used, next call about $${nextUsd.toFixed(4)}, budget $${s.budget.max_usd})`;
    const item = raise(t, 'budget_request', title, 'awaiting_budget', {
      exhausted: what,
      usage: { ...s.usage },
      budget: { ...s.budget },
      next_call_estimate: { tokens: nextTokens, usd: nextUsd },
      hint: `grant_budget with {"${what}": N} to continue the same conversation, or cancel`,
    });
    await waitFor(t, item);
  }
}

/** Raises the budget by a human's grant; more wall-clock time moves the deadline. */
export function grant(t: TaskRun, g: BudgetGrant): void {
  const b = t.s.budget;
  if (g.max_tokens) b.max_tokens += g.max_tokens;
  if (g.max_usd) b.max_usd += g.max_usd;
  if (g.max_steps) b.max_steps += g.max_steps;
  if (g.max_wall_clock_minutes) {
    b.max_wall_clock_minutes += g.max_wall_clock_minutes;
    t.s.deadline_at = addMinutes(t.s.deadline_at, g.max_wall_clock_minutes);
  }
}
