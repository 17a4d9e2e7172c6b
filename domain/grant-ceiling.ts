/**
 * How far grants may lift a task's budget: the rule the workflow applies to every budget decision. Pure and free of
 * zod, so the workflow bundle does not load a schema library into every workflow (the schema is `GrantCeiling` in
 * access.ts, which the API validates the operator's settings with).
 */
import { BUDGET_PRESETS } from './budget-presets';
import type { Budget, BudgetGrant } from './task';

/** Highest total a budget may reach through grants, per field (unset: that field is not capped). */
export interface GrantLimits {
  max_tokens?: number;
  max_usd?: number;
  max_steps?: number;
  max_wall_clock_minutes?: number;
}

/** How many times the largest budget preset a grant may lift a task to when the operator sets no ceiling. */
const BUILTIN_CEILING_MULTIPLE = 4;

/**
 * The ceiling of every field no TEAMS_FILE ceiling names, so grants on an unconfigured install stay bounded:
 * four times the `large` preset (twenty times the default budget), for every team, task and granter.
 */
export const BUILTIN_GRANT_CEILING: Readonly<Required<GrantLimits>> = {
  max_tokens: BUDGET_PRESETS.large.max_tokens * BUILTIN_CEILING_MULTIPLE,
  max_usd: BUDGET_PRESETS.large.max_usd * BUILTIN_CEILING_MULTIPLE,
  max_steps: BUDGET_PRESETS.large.max_steps * BUILTIN_CEILING_MULTIPLE,
  max_wall_clock_minutes: BUDGET_PRESETS.large.max_wall_clock_minutes * BUILTIN_CEILING_MULTIPLE,
};

/** Fields of a grant that would lift the budget above the team's ceiling, with the limit each would pass. */
export function grantOverCeiling(budget: Budget, grant: BudgetGrant, ceiling: GrantLimits | undefined): { field: keyof GrantLimits; after: number; ceiling: number }[] {
  if (!ceiling) return [];
  const out: { field: keyof GrantLimits; after: number; ceiling: number }[] = [];
  for (const field of ['max_tokens', 'max_usd', 'max_steps', 'max_wall_clock_minutes'] as const) {
    const add = grant[field];
    const limit = ceiling[field];
    if (add === undefined || limit === undefined) continue;
    const after = budget[field] + add;
    if (after > limit) out.push({ field, after, ceiling: limit });
  }
  return out;
}
