/**
 * Named budgets a forge label asks for (`agent-budget:small|medium|large`), so a person delegating from an issue
 * picks a size instead of writing limits. Pure module.
 */
import type { Budget } from './task';

/** The budget sizes a label may name, smallest first. */
export const BUDGET_PRESET_NAMES = ['small', 'medium', 'large'] as const;
export type BudgetPresetName = (typeof BUDGET_PRESET_NAMES)[number];

/** What each size allows; `medium` is the task schema's default budget. */
export const BUDGET_PRESETS: Readonly<Record<BudgetPresetName, Budget>> = {
  small: { max_tokens: 100_000, max_usd: 2, max_steps: 25, max_wall_clock_minutes: 60, max_idle_minutes: 30 },
  medium: { max_tokens: 200_000, max_usd: 5, max_steps: 50, max_wall_clock_minutes: 240, max_idle_minutes: 30 },
  large: { max_tokens: 1_000_000, max_usd: 25, max_steps: 200, max_wall_clock_minutes: 720, max_idle_minutes: 60 },
};

/** The prefix of a label naming a budget size. */
export const BUDGET_LABEL_PREFIX = 'agent-budget:';

/**
 * The size the labels name (`agent-budget:<size>`, case-insensitive), the largest when several do; null when none
 * names a known size, so the task gets the default budget.
 */
export function budgetPresetOf(labels: readonly string[]): BudgetPresetName | null {
  let best: number = -1;
  for (const label of labels) {
    if (!label.toLowerCase().startsWith(BUDGET_LABEL_PREFIX)) continue;
    const i = BUDGET_PRESET_NAMES.indexOf(label.slice(BUDGET_LABEL_PREFIX.length).trim().toLowerCase() as BudgetPresetName);
    if (i > best) best = i;
  }
  return best < 0 ? null : BUDGET_PRESET_NAMES[best]!;
}
