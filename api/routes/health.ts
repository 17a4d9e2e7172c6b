/**
 * Health: `GET /healthz` (ready: Temporal answers and every part of this process runs) and
 * `GET /livez` (alive: every part of this process runs; no dependency is asked, so a Temporal outage restarts nothing).
 */
import type { Client } from '@temporalio/client';
import express, { Router } from 'express';
import type { Logger } from '../../workers/log';
import type { AppDeps } from '../deps';
import { requestContext } from '../request';

/** Deadline of the Temporal check; past it the service counts as unreachable. */
export const HEALTH_DEADLINE_MS = 1_000;

/** What the entrypoint reports about this process: fields to show, and what is broken (a 503 while any is). */
export interface ProcessHealth {
  fields: Record<string, unknown>;
  /** One short reason per part that should run and does not (e.g. `worker FAILED`); empty when all run. */
  failing: string[];
}

/** The health routes: `/healthz` 200 when Temporal answers and nothing is failing, else 503; `/livez` 503 only when something is failing. */
export function healthRoutes(deps: AppDeps): Router {
  const router = Router();

  router.get('/healthz', async function health(_req, res) {
    const temporal = (await temporalReachable(deps.client, deps.log)) ? 'ok' : 'unreachable';
    const proc = (await deps.health?.()) ?? { fields: {}, failing: [] };
    const ok = temporal === 'ok' && proc.failing.length === 0;
    res.status(ok ? 200 : 503).json({
      ...proc.fields,
      status: ok ? 'ok' : 'unavailable',
      temporal,
      namespace: deps.namespace,
      failing: proc.failing,
    });
  });

  router.get('/livez', async function live(_req, res) {
    const proc = (await deps.health?.()) ?? { fields: {}, failing: [] };
    res.status(proc.failing.length === 0 ? 200 : 503).json({ status: proc.failing.length === 0 ? 'ok' : 'unavailable', failing: proc.failing });
  });

  return router;
}

/** An app with only the health routes, for a process that runs a worker and no API (probes need something to ask). */
export function createHealthApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestContext(deps.log));
  app.use(healthRoutes(deps));
  return app;
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
