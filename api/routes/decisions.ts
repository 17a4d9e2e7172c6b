/**
 * Human decisions, sent to the task workflow as Updates: the workflow's validators
 * refuse stale or misplaced ones, and the error middleware turns that into a 4xx.
 */
import type { WorkflowHandle } from '@temporalio/client';
import type { Response, Router } from 'express';
import { AccessConfig, grantCeilingOf, principalOf, roleAtLeast } from '../../domain/access';
import { DECIDE_ROLE, MESSAGE_ROLE } from '../../domain/roles';
import { CancelBody, DecisionBody, MessageBody, type ActedBy } from '../../domain/task';
import { cancelUpdate, decideUpdate, messageUpdate, taskQuery } from '../../workflows/messages';
import { identityOf } from '../auth/context';
import { mayCancel, mayDecide, requireRole, taskAccess, taskFactsOf } from '../auth/guard';
import { ConflictError, toHttpError } from '../errors';
import { jsonBody } from '../body';
import type { AppDeps } from '../deps';
import { valid, validate } from '../validate';
import { pathParam, taskRouter } from './params';

/** Who acts, from the authenticated identity: the body's `actor` is never read. */
function actedBy(res: Response): ActedBy {
  const identity = identityOf(res);
  return { actor: identity.name, by: principalOf(identity, taskFactsOf(res).team) };
}

/** A parsed body without the `actor` older clients still send. */
function withoutActor<T extends { actor?: string }>(body: T): Omit<T, 'actor'> {
  const { actor: _ignored, ...rest } = body;
  return rest;
}

/** Routes that decide inbox items, message a task and cancel it; each answers with the workflow's DecisionAck. */
export function decisionRoutes(deps: AppDeps): Router {
  const { client } = deps;
  const router = taskRouter();
  const body = jsonBody(deps.maxBodyBytes);
  const decision = validate('body', DecisionBody);
  const message = validate('body', MessageBody);
  // A bare `POST …/cancel` with no body is a cancellation with no reason.
  const cancel = validate('body', CancelBody.default({}));
  const access = taskAccess(deps);
  const teams = deps.access ?? AccessConfig.parse({});
  const decisionRules = mayDecide({ client, access: teams }, decision);


  router.post('/v1/tasks/:id/inbox/:item_id', requireRole(DECIDE_ROLE), body, decision, access, decisionRules, async function decide(req, res) {
    const d = valid(req, decision);
    const handle = client.workflow.getHandle(pathParam(req, 'id'));
    const itemId = pathParam(req, 'item_id');
    try {
      const ceiling = d.action === 'grant_budget' ? grantCeilingOf(teams, taskFactsOf(res).team) : undefined;
      const args = { ...withoutActor(d), item_id: itemId, ...actedBy(res), ...(ceiling === undefined ? {} : { ceiling }) };
      res.json(await endedAs409(handle, () => handle.executeUpdate(decideUpdate, { args: [args] })));
    } catch (err) {
      if (toHttpError(err)?.code !== 'task_ended') throw err;
      // A closed task still answers queries: say who settled the item, as an open task's validator would.
      const view = await handle.query(taskQuery).catch(() => null);
      const r = view?.items.find((i) => i.item_id === itemId)?.resolution;
      if (!view || !r) throw err;
      throw new ConflictError('stale_decision', `item ${itemId} is no longer pending: ${r.action} by ${r.actor} at ${r.at}; the task has ended (${view.state})`, err);
    }
  });

  router.post('/v1/tasks/:id/messages', requireRole(MESSAGE_ROLE), body, message, access, async function sendMessage(req, res) {
    const m = valid(req, message);
    const handle = client.workflow.getHandle(pathParam(req, 'id'));
    // A message retries a pending health alert: that is a decision, and needs an approver.
    const args = { ...withoutActor(m), ...actedBy(res), may_settle: roleAtLeast(identityOf(res).role, DECIDE_ROLE) };
    res.json(await endedAs409(handle, () => handle.executeUpdate(messageUpdate, { args: [args] })));
  });

  router.post('/v1/tasks/:id/cancel', body, cancel, access, mayCancel(), async function cancelTask(req, res) {
    const c = valid(req, cancel);
    const handle = client.workflow.getHandle(pathParam(req, 'id'));
    res.json(await endedAs409(handle, () => handle.executeUpdate(cancelUpdate, { args: [{ ...withoutActor(c), ...actedBy(res) }] })));
  });

  return router;
}

/**
 * Sends an update; one that reaches a workflow as it closes can fail NOT_FOUND with a message other than
 * "already completed". When the task exists and is no longer running, that is the task having ended (409).
 */
async function endedAs409<T>(handle: WorkflowHandle, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (err) {
    if (toHttpError(err)?.code !== 'task_not_found') throw err;
    const closed = await handle.describe().then((d) => d.status.name !== 'RUNNING', () => false);
    if (!closed) throw err;
    throw new ConflictError('task_ended', `task ${handle.workflowId} has ended`, err);
  }
}
