/**
 * Authorization of `/v1` routes: small middleware factories that check the caller's role, the team of the
 * task a route names, and what a decision may do, before the handler sends anything to the workflow.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { NextFunction, Request, Response } from 'express';
import { actionRefusal, DECIDE_ROLE } from '../../domain/roles';
import { canSee, DEFAULT_TEAM, decisionRefusal, grantCeilingOf, grantOverCeiling, roleAtLeast, teamSettings, type AccessConfig, type Identity, type Role } from '../../domain/access';
import type { DecisionBody } from '../../domain/task';
import { TASK_WORKFLOW_TYPE, taskQuery } from '../../workflows/messages';
import { SA_REQUESTER, SA_TEAM } from '../../workflows/search-attributes';
import type { TaskRecordReader } from '../deps';
import { HttpError } from '../errors';
import { pathParam } from '../routes/params';
import { valid, type Validator } from '../validate';
import { ForbiddenError, identityOf } from './context';

/** What authorization needs to know of the task a route names. */
export interface TaskFacts {
  /** Null for a task from before teams: only admins see it. */
  team: string | null;
  requester: string | null;
}

/** Middleware refusing (403) a caller whose role does not include `role`. */
export function requireRole(role: Role) {
  return function checkRole(_req: Request, res: Response, next: NextFunction): void {
    const identity = identityOf(res);
    next(roleAtLeast(identity.role, role) ? undefined : new ForbiddenError(`this needs the ${role} role (you are ${identity.role})`));
  };
}

/** The task facts {@link taskAccess} found for this request. */
export function taskFactsOf(res: Response): TaskFacts {
  const facts = res.locals.task as TaskFacts | undefined;
  if (facts === undefined) throw new Error('taskAccess() did not run before the handler');
  return facts;
}

/**
 * Middleware reading the team and requester of the task `:id` names (its search attributes, or its final
 * record once Temporal has forgotten it) and refusing (403) a caller who does not see that team.
 * An unknown task stays a 404.
 */
export function taskAccess(deps: { client: Client; records?: TaskRecordReader }) {
  return async function checkTaskTeam(req: Request, res: Response, next: NextFunction): Promise<void> {
    try {
      const identity = identityOf(res);
      const facts = await readFacts(deps, pathParam(req, 'id'));
      if (!canSee(identity, facts.team)) throw new ForbiddenError(facts.team === null ? 'this task has no team: only admins see it' : 'this task belongs to another team');
      res.locals.task = facts;
      next();
    } catch (err) {
      next(err);
    }
  };
}

async function readFacts(deps: { client: Client; records?: TaskRecordReader }, id: string): Promise<TaskFacts> {
  try {
    const d = await deps.client.workflow.getHandle(id).describe();
    // Only task workflows are tasks: a notification workflow is not one to read, decide or cancel.
    if (d.type !== TASK_WORKFLOW_TYPE) throw new WorkflowNotFoundError(`no task ${id}`, id, undefined);
    return { team: d.typedSearchAttributes.get(SA_TEAM) ?? null, requester: d.typedSearchAttributes.get(SA_REQUESTER) ?? null };
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError) || deps.records === undefined) throw err;
    const record = await deps.records.read(id);
    if (record === null) throw err;
    return { team: record.view.spec.team ?? null, requester: record.view.spec.requester };
  }
}

/** Middleware letting an approver cancel any task it sees, and a task's requester cancel their own (after {@link taskAccess}). */
export function mayCancel() {
  return function checkCancel(_req: Request, res: Response, next: NextFunction): void {
    const identity = identityOf(res);
    const facts = taskFactsOf(res);
    const refusal = actionRefusal(identity.role, 'cancel', facts.requester !== null && facts.requester === identity.subject);
    next(refusal === null ? undefined : new ForbiddenError(refusal));
  };
}

/**
 * Middleware applying the decision rules to the item `:item_id` names, read from the task itself: the role,
 * the team's separation of duties, and its grant ceiling (always one: see {@link grantCeilingOf}). An item the task does not have is left to the
 * workflow's validator (a 404 naming it).
 */
export function mayDecide(deps: { client: Client; access: AccessConfig }, body: Validator<DecisionBody>) {
  return async function checkDecision(req: Request, res: Response, next: NextFunction): Promise<void> {
    try {
      const identity = identityOf(res);
      const facts = taskFactsOf(res);
      const d = valid(req, body);
      const settings = teamSettings(deps.access, facts.team);
      if (!roleAtLeast(identity.role, DECIDE_ROLE)) throw new ForbiddenError(`deciding an item needs the ${DECIDE_ROLE} role (you are ${identity.role})`);
      const view = await deps.client.workflow.getHandle(pathParam(req, 'id')).query(taskQuery);
      const item = view.items.find((i) => i.item_id === pathParam(req, 'item_id'));
      if (item !== undefined) {
        // The task's own spec is the authority on who asked for it.
        const refusal = decisionRefusal(identity, { team: facts.team, requester: view.spec.requester }, item.kind, d.action, settings);
        if (refusal !== null) throw new ForbiddenError(refusal);
        if (d.action === 'grant_budget' && d.budget) {
          const over = grantOverCeiling(view.budget, d.budget, grantCeilingOf(deps.access, facts.team));
          if (over.length > 0) {
            throw new ForbiddenError(`the grant would lift the budget above the team's ceiling: ${over.map((o) => `${o.field} to ${o.after} (ceiling ${o.ceiling})`).join(', ')}`, {
              details: over.map((o) => ({ path: `budget.${o.field}`, message: `would reach ${o.after}; the team's ceiling is ${o.ceiling}` })),
            });
          }
        }
      }
      next();
    } catch (err) {
      next(err);
    }
  };
}

/** Thrown when a caller in several teams submits a task without naming one (400, naming the field). */
export class TeamRequiredError extends HttpError {
  override readonly name = 'TeamRequiredError';
  constructor(teams: readonly string[]) {
    const message = `you belong to several teams (${teams.join(', ')}): name the task's team`;
    super(400, 'team_required', message, { details: [{ path: 'team', message }] });
  }
}

/**
 * The team a new task of `identity` belongs to: the one the body names (theirs, or any for an admin), else the
 * caller's only team, else `DEFAULT_TEAM` for an admin in no team. Throws 400 when several could be meant, 403
 * when the team is not the caller's.
 */
export function intakeTeam(identity: Identity, named: string | undefined): string {
  if (named !== undefined) {
    if (identity.role !== 'admin' && !identity.teams.includes(named)) throw new ForbiddenError(`you may not submit tasks for team ${JSON.stringify(named)}`);
    return named;
  }
  if (identity.teams.length === 1) return identity.teams[0]!;
  if (identity.teams.length > 1) throw new TeamRequiredError(identity.teams);
  if (identity.role === 'admin') return DEFAULT_TEAM;
  throw new ForbiddenError('you belong to no team, so you may not submit tasks');
}
