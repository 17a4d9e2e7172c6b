/**
 * Path parameters shared by the task routes: a malformed id cannot name anything, so it is a 404 before any Temporal call.
 */
import { Router, type Request } from 'express';
import { NotFoundError } from '../errors';
import { ARTIFACT_NAME, ITEM_ID, TASK_ID } from '../schemas';
import { matchParam } from '../validate';

/** A router whose `:id`, `:item_id` and `:name` parameters are checked before its handlers run. */
export function taskRouter(): Router {
  const router = Router();
  router.param('id', matchParam(TASK_ID, (id) => new NotFoundError('task_not_found', `no task ${quoted(id)}`)));
  router.param('item_id', matchParam(ITEM_ID, (id) => new NotFoundError('unknown_item', `no item ${quoted(id)}`)));
  router.param('name', matchParam(ARTIFACT_NAME, (name) => new NotFoundError('artifact_not_found', `no artifact ${quoted(name)}`)));
  return router;
}

/** A caller's value in a message: quoted and bounded. */
function quoted(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}…` : value);
}

/** The path parameters {@link taskRouter} checks. */
export type TaskParam = 'id' | 'item_id' | 'name';

/** A checked path parameter as a string (express types allow arrays for wildcard segments, which these routes have none of). */
export function pathParam(req: Request, name: TaskParam): string {
  const value = req.params[name];
  if (typeof value !== 'string') throw new Error(`route has no :${name} parameter`);
  return value;
}
