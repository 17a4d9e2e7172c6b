/**
 * Validation as middleware: each part of a request is parsed once at the edge, and
 * handlers read the typed result through the validator that produced it.
 */
import type { NextFunction, Request, RequestHandler, RequestParamHandler, Response } from 'express';
import type { z } from 'zod';
import { type HttpError, RequestValidationError } from './errors';

/** The request parts a schema can be applied to; path parameters are checked by {@link matchParam}. */
export type RequestPart = 'body' | 'query' | 'headers';

const WHERE: Readonly<Record<RequestPart, string>> = { body: 'request body', query: 'query string', headers: 'request headers' };

/** A middleware that parses one request part; `valid(req, it)` returns what it parsed, typed. */
export interface Validator<T> extends RequestHandler {
  readonly part: RequestPart;
  /** Carries the parsed type only; never set at run time. */
  readonly output?: T;
}

/** Parsed parts per request; a WeakMap so nothing outlives the request and nothing else can write here. */
const parsedParts = new WeakMap<Request, Partial<Record<RequestPart, unknown>>>();

/** Middleware parsing `req[part]` with `schema`; a mismatch reaches the error middleware as a 400 naming each field. */
export function validate<S extends z.ZodType>(part: RequestPart, schema: S): Validator<z.output<S>> {
  const validateRequest = function validateRequest(req: Request, _res: Response, next: NextFunction): void {
    const result = schema.safeParse(req[part]);
    if (!result.success) {
      next(new RequestValidationError(WHERE[part], result.error));
      return;
    }
    parsedParts.set(req, { ...parsedParts.get(req), [part]: result.data });
    next();
  };
  return Object.assign(validateRequest, { part });
}

/** What `validator` parsed for this request; throws if the route forgot to run it (a programming error, so a 500). */
export function valid<T>(req: Request, validator: Validator<T>): T {
  const parts = parsedParts.get(req);
  if (parts === undefined || !(validator.part in parts)) {
    throw new Error(`validate('${validator.part}', …) did not run before the handler`);
  }
  return parts[validator.part] as T;
}

/** Router param hook refusing a path segment that does not match `pattern`, before any handler runs. */
export function matchParam(pattern: RegExp, refuse: (value: string) => HttpError): RequestParamHandler {
  return function checkParam(_req: Request, _res: Response, next: NextFunction, value: unknown): void {
    next(typeof value === 'string' && pattern.test(value) ? undefined : refuse(String(value)));
  };
}
