/**
 * The authentication middleware of `/v1`: asks each credential source in turn and keeps the first
 * identity one of them recognises; a request none recognises is refused before any route runs.
 */
import type { NextFunction, Request, Response } from 'express';
import { setAuthenticated, UnauthenticatedError, type CredentialSource } from './context';

/** The challenge a 401 carries: every source this API has accepts a bearer token. */
const CHALLENGE = 'Bearer';

/**
 * Middleware running `sources` in order: the first that recognises a credential decides (a bad one is a 401,
 * not a fall-through to the next source); a request with no credential any source knows is a 401 too.
 */
export function authenticate(sources: readonly CredentialSource[]) {
  return async function authenticateRequest(req: Request, res: Response, next: NextFunction): Promise<void> {
    try {
      for (const source of sources) {
        const auth = await source.authenticate(req);
        if (auth !== null) {
          setAuthenticated(res, auth);
          next();
          return;
        }
      }
      throw new UnauthenticatedError();
    } catch (err) {
      if (err instanceof UnauthenticatedError) res.set('WWW-Authenticate', CHALLENGE);
      next(err);
    }
  };
}
