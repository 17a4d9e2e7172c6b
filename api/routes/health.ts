/**
 * `GET /healthz`: whether this process can reach Temporal, plus what the entrypoint adds.
 */
import type { Client } from '@temporalio/client';
import { Router } from 'express';
import type { Logger } from '../../workers/log';
import type { AppDeps } from '../deps';

/** Deadline of the Temporal check; past it the service counts as unreachable. */
export const HEALTH_DEADLINE_MS = 1_000;

/** The health route: 200 when Temporal answers, 503 when it does not. */
export function healthRoutes(deps: AppDeps): Router {
  const router = Router();

  router.get('/healthz', async function health(_req, res) {
    const temporal = (await temporalReachable(deps.client, deps.log)) ? 'ok' : 'unreachable';
    const extra = (await deps.health?.()) ?? {};
    res.status(temporal === 'ok' ? 200 : 503).json({
      ...extra,
      status: temporal === 'ok' ? 'ok' : 'unavailable',
      temporal,
      namespace: deps.namespace,
    });
  });

  return router;
}

/**
 * A cheap frontend call under a deadline. The deadline, not a timer race, bounds it: the client's
 * retries of an unreachable address stop at the deadline (plus one backoff), so nothing outlives the request.
 */
async function temporalReachable(client: Client, log: Logger): Promise<boolean> {
  try {
    await client.connection.withDeadline(Date.now() + HEALTH_DEADLINE_MS, () => client.workflowService.getSystemInfo({}));
    return true;
  } catch (err) {
    log.warn('temporal health check failed', { error: err });
    return false;
  }
}
