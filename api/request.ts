/**
 * Per-request context: the request id every response carries, and the debug log line of each request.
 */
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../workers/log';

/** A caller's `X-Request-Id` is echoed only when it is this safe to put in logs and headers. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id assigned by {@link requestContext}; empty if that middleware did not run. */
export function requestIdOf(res: Response): string {
  return typeof res.locals.requestId === 'string' ? res.locals.requestId : '';
}

/** Gives every request an id (a well-formed incoming `X-Request-Id`, else a new UUID) and logs it when it finishes. */
export function requestContext(log: Logger): RequestHandler {
  return function assignRequestId(req: Request, res: Response, next: NextFunction): void {
    const given = req.get('x-request-id');
    const id = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.set('X-Request-Id', id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      log.debug('http request', {
        request_id: id,
        method: req.method,
        path: req.path,
        status: res.statusCode,
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
    });
    next();
  };
}
