/**
 * Validation as middleware: each request part is parsed once at the edge and
 * handlers read the typed result from `res.locals`.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { z } from 'zod';
import { HttpError } from './errors';

/** Parses `req[part]` with `schema` into `res.locals[part]`; a failure reaches the error middleware as a ZodError. */
export function validate<S extends z.ZodType>(part: 'body' | 'query' | 'params', schema: S): RequestHandler {
  return function validateRequest(req: Request, res: Response, next: NextFunction): void {
    const raw = part === 'body' && req.body === undefined ? {} : req[part];
    const parsed = schema.safeParse(raw);
    if (!parsed.success) return next(parsed.error);
    res.locals[part] = parsed.data;
    next();
  };
}

/** The parsed value of a request part, typed by its schema. */
export function parsed<S extends z.ZodType>(res: Response, part: 'body' | 'query' | 'params', _schema: S): z.infer<S> {
  return res.locals[part] as z.infer<S>;
}

/** Refuses bodies that are not JSON on the routes that take one (415), before anything else reads them. */
export function requireJson(): RequestHandler {
  return function requireJsonBody(req: Request, _res: Response, next: NextFunction): void {
    const length = Number(req.headers['content-length'] ?? 0);
    const hasBody = length > 0 || req.headers['transfer-encoding'] !== undefined;
    if (hasBody && !req.is('application/json')) {
      return next(new HttpError(415, 'unsupported_media_type', 'send the body as application/json'));
    }
    next();
  };
}
