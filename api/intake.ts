/**
 * Intake rules that need more than the schema: the repository rules (REPO_ALLOW, REPO_LOCAL_ROOTS,
 * DATA_DIR, resolved against the file system) and a price for the model a dollar budget must bind.
 */
import { promises as fs } from 'node:fs';
import type { NextFunction, Request, Response } from 'express';
import { intersectEgress } from '../domain/egress';
import { findPrice, type PriceTable } from '../domain/prices';
import { RepoRefusedError, resolveRepo, type RepoRules } from '../domain/repo-policy';
import type { TaskSpec } from '../domain/task';
import { HttpError } from './errors';
import { valid, type Validator } from './validate';

/** Thrown when a task names a repository the rules refuse; the message names the rule. */
export class RepoNotAllowedError extends HttpError {
  override readonly name = 'RepoNotAllowedError';
  constructor(cause: RepoRefusedError) {
    super(400, 'repo_not_allowed', cause.message, { cause, details: [{ path: 'repo', message: `${cause.rule}: ${cause.message}` }] });
  }
}

/** Thrown when an LLM task's model has no price, so its `max_usd` could never bind. */
export class UnpricedModelError extends HttpError {
  override readonly name = 'UnpricedModelError';
  constructor(model: string, maxUsd: number) {
    const example = JSON.stringify({ [model]: { input: 0.5, cached_input: 0.05, output: 2 } });
    const message =
      `planner.model: no price is known for ${JSON.stringify(model)}, so budget.max_usd ($${maxUsd}) could never bind; ` +
      `the operator adds it to MODEL_PRICES (JSON, USD per 1M tokens, 0 for a free local model), e.g. MODEL_PRICES='${example}'`;
    super(400, 'unpriced_model', message, { details: [{ path: 'planner.model', message }] });
  }
}

/** Thrown when an egress allowlist names something the operator's ceiling (EGRESS_ALLOW) admits none of. */
export class EgressNotAllowedError extends HttpError {
  override readonly name = 'EgressNotAllowedError';
  constructor(details: { path: string; message: string }[], ceiling: readonly string[]) {
    const message = `egress allowlist entries outside the operator's EGRESS_ALLOW (${ceiling.join(', ') || 'empty: no sandbox has any network'}): ${details.map((d) => d.message).join('; ')}`;
    super(400, 'egress_not_allowed', message, { details });
  }
}

/** Entries of the task's allowlists that the ceiling admits no host of (a typo, or a domain the operator has not opened). */
function egressOutsideCeiling(task: TaskSpec, ceiling: readonly string[]): { path: string; message: string }[] {
  const lists: [string, readonly string[]][] = [['policy.egress_allowlist', task.policy.egress_allowlist]];
  if (task.setup?.egress_allowlist) lists.push(['setup.egress_allowlist', task.setup.egress_allowlist]);
  const out: { path: string; message: string }[] = [];
  for (const [where, list] of lists) {
    list.forEach((entry, i) => {
      if (intersectEgress([entry], ceiling).length === 0) out.push({ path: `${where}.${i}`, message: `"${entry}" is outside EGRESS_ALLOW` });
    });
  }
  return out;
}

/** The intake rules a task must pass, whoever submits it; throws the {@link HttpError} naming the first it breaks. */
export async function checkIntake(deps: IntakeDeps, task: TaskSpec): Promise<void> {
  try {
    await resolveRepo(task.repo, deps.repoRules, (p) => fs.realpath(p));
  } catch (err) {
    throw err instanceof RepoRefusedError ? new RepoNotAllowedError(err) : err;
  }
  const outside = egressOutsideCeiling(task, deps.egressCeiling ?? []);
  if (outside.length > 0) throw new EgressNotAllowedError(outside, deps.egressCeiling ?? []);
  if (task.planner.kind === 'llm' && Number.isFinite(task.budget.max_usd) && findPrice(deps.prices, task.planner.model) === undefined) {
    throw new UnpricedModelError(task.planner.model, task.budget.max_usd);
  }
}

/** What the intake rules are read from. */
export interface IntakeDeps {
  repoRules: RepoRules;
  prices: PriceTable;
  egressCeiling?: readonly string[];
}

/**
 * Middleware applying the intake rules to the body `spec` parsed. Every task has a finite `max_usd` (the schema
 * defaults it), so an LLM task whose model the price table does not know is always refused.
 */
export function intakePolicy(deps: IntakeDeps, spec: Validator<TaskSpec>) {
  return async function checkIntakeOfBody(req: Request, _res: Response, next: NextFunction): Promise<void> {
    try {
      await checkIntake(deps, valid(req, spec));
      next();
    } catch (err) {
      next(err);
    }
  };
}
