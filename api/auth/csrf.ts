/**
 * CSRF protection for requests authenticated by the session cookie: a browser sends the cookie with any
 * request another site makes it send, so a state-changing one must also prove it came from our own page.
 */
import type { NextFunction, Request, Response } from 'express';
import { HttpError } from '../errors';
import { authenticatedOf } from './context';
import type { Sessions } from './session';

/** Methods that change nothing; every other method needs the CSRF token. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Thrown when a cookie-authenticated request that changes state lacks the session's CSRF token or comes from another origin. */
export class CsrfError extends HttpError {
  override readonly name = 'CsrfError';
  constructor(message: string) {
    super(403, 'csrf_failed', message);
  }
}

/** The origin requests of our own pages carry: PUBLIC_URL's when set, else the request's own. */
export function ownOrigin(req: Request, publicUrl: string | undefined): string {
  return publicUrl !== undefined ? new URL(publicUrl).origin : `${req.protocol}://${req.get('host') ?? ''}`;
}

/**
 * Middleware after authentication: a cookie request with a method other than GET/HEAD/OPTIONS needs
 * `x-csrf-token` equal to its session's token, and an `Origin` header, when present, naming this origin.
 * Bearer requests pass: a browser never adds a bearer token on its own.
 */
export function csrfGuard(sessions: Sessions, publicUrl?: string) {
  return function checkCsrf(req: Request, res: Response, next: NextFunction): void {
    const auth = authenticatedOf(res);
    if (auth === null || auth.carrier !== 'cookie' || SAFE_METHODS.has(req.method)) {
      next();
      return;
    }
    const origin = req.get('origin');
    if (origin !== undefined && origin !== ownOrigin(req, publicUrl)) {
      next(new CsrfError(`a request from ${origin} may not use this site's session`));
      return;
    }
    if (auth.sessionId === undefined || !sessions.csrfMatches(auth.sessionId, req.get('x-csrf-token'))) {
      next(new CsrfError('send the x-csrf-token header that GET /v1/me gives this session'));
      return;
    }
    next();
  };
}
