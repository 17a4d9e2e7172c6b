/**
 * Intake rules that need more than the schema: the repository rules (REPO_ALLOW, REPO_LOCAL_ROOTS,
 * DATA_DIR, resolved against the file system) and a price for the model a dollar budget must bind.
 */
import { promises as fs } from 'node:fs';
import type { NextFunction, Request, Response } from 'express';
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

/**
 * Middleware applying the intake rules to the body `spec` parsed. Every task has a finite `max_usd` (the schema
 * defaults it), so an LLM task whose model the price table does not know is always refused.
 */
export function intakePolicy(deps: { repoRules: RepoRules; prices: PriceTable }, spec: Validator<TaskSpec>) {
  return async function checkIntake(req: Request, _res: Response, next: NextFunction): Promise<void> {
    const task = valid(req, spec);
    try {
      await resolveRepo(task.repo, deps.repoRules, (p) => fs.realpath(p));
    } catch (err) {
      next(err instanceof RepoRefusedError ? new RepoNotAllowedError(err) : err);
      return;
    }
    if (task.planner.kind === 'llm' && Number.isFinite(task.budget.max_usd) && findPrice(deps.prices, task.planner.model) === undefined) {
      next(new UnpricedModelError(task.planner.model, task.budget.max_usd));
      return;
    }
    next();
  };
}
