/**
 * The HTTP edge: `createApp(deps)` builds the express app without listening or connecting.
 */
import { randomUUID } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Client } from '@temporalio/client';
import type { Logger } from '../workers/log';
import { HttpError, errorHandler } from './errors';
import { taskRoutes } from './tasks';

/** Everything the API needs; tests pass real instances. */
export interface AppDeps {
  client: Client;
  taskQueue: string;
  namespace: string;
  log: Logger;
  artifacts?: { readByName(taskId: string, name: string): Promise<Buffer> };
  maxBodyBytes?: number;
  /** Extra facts for `/healthz` (worker state, sandbox isolation). */
  health?: () => Promise<Record<string, unknown>>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,100}$/;
const HEALTH_TIMEOUT_MS = 2_000;

/** Builds the API app; side-effect free. */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(requestId(deps.log));
  app.use(express.json({ limit: deps.maxBodyBytes ?? 512 * 1024, strict: true, type: 'application/json' }));

  app.get('/healthz', async (_req, res) => {
    const temporal = await Promise.race([
      deps.client.workflowService.getSystemInfo({}).then(
        () => 'ok',
        () => 'unreachable',
      ),
      new Promise<string>((resolve) => setTimeout(() => resolve('unreachable'), HEALTH_TIMEOUT_MS).unref()),
    ]);
    const extra = deps.health ? await deps.health() : {};
    res.status(temporal === 'ok' ? 200 : 503).json({ status: temporal === 'ok' ? 'ok' : 'degraded', temporal, namespace: deps.namespace, ...extra });
  });

  app.use('/v1', taskRoutes(deps));
  app.use(function notFound(req: Request, _res: Response, next: NextFunction) {
    next(new HttpError(404, 'not_found', `no route for ${req.method} ${req.path}`));
  });
  app.use(errorHandler(deps.log));
  return app;
}

/** Gives every request an id (echoing a well-formed `X-Request-Id`) and logs it at debug level. */
function requestId(log: Logger) {
  return function assignRequestId(req: Request, res: Response, next: NextFunction): void {
    const given = req.header('x-request-id');
    const id = given && REQUEST_ID.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.setHeader('X-Request-Id', id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      log.debug('request', { request_id: id, method: req.method, path: req.path, status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
    next();
  };
}
