/**
 * `GET /v1/inbox`: the Agent Inbox listing.
 */
import { Router } from 'express';
import { visibleTeams } from '../../domain/access';
import { identityOf } from '../auth/context';
import type { AppDeps } from '../deps';
import { InboxReader } from '../inbox';
import { InboxQuery } from '../schemas';
import { valid, validate } from '../validate';

/** The inbox route: pending items of open tasks, filtered, highest priority and oldest first. */
export function inboxRoutes(deps: AppDeps): Router {
  const router = Router();
  const query = validate('query', InboxQuery);
  const reader = new InboxReader(deps.client);

  router.get('/v1/inbox', query, async function getInbox(req, res) {
    res.json(await reader.list({ ...valid(req, query), teams: visibleTeams(identityOf(res)) }));
  });

  return router;
}
