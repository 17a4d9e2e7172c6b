/**
 * The authentication contract of the HTTP edge: sources that turn a request's credential into an
 * identity, the errors they throw, and where the identity of a request is kept.
 */
import type { Request, Response } from 'express';
import type { Identity } from '../../domain/access';
import { HttpError } from '../errors';

/** Thrown when a request has no credential, or one that does not verify (401). */
export class UnauthenticatedError extends HttpError {
  override readonly name = 'UnauthenticatedError';
  constructor(message = 'sign in, or send Authorization: Bearer <token>', options: { cause?: unknown } = {}) {
    super(401, 'unauthenticated', message, options);
  }
}

/** Thrown when the identity may not do this: the wrong role, another team's task, a refused decision (403). */
export class ForbiddenError extends HttpError {
  override readonly name = 'ForbiddenError';
  constructor(message: string, options: { cause?: unknown; details?: { path: string; message: string }[] } = {}) {
    super(403, 'forbidden', message, options);
  }
}

/** How a credential reached the API: a cookie needs CSRF protection on state-changing requests, a bearer token does not. */
export type CredentialCarrier = 'bearer' | 'cookie';

/** What a source made of a request: who, and how the credential was carried. */
export interface Authenticated {
  identity: Identity;
  carrier: CredentialCarrier;
  /** For a cookie session: its id, from which the CSRF token is derived. */
  sessionId?: string;
}

/**
 * One kind of credential (API token, local admin token, JWT, session cookie). Resolves null when the request
 * carries none of its kind; throws {@link UnauthenticatedError} when it carries one that does not verify.
 */
export interface CredentialSource {
  readonly name: string;
  authenticate(req: Request): Promise<Authenticated | null>;
}

/** Keeps the request's authentication for later middleware and handlers. */
export function setAuthenticated(res: Response, auth: Authenticated): void {
  res.locals.auth = auth;
}

/** The request's authentication, or null when no source recognised a credential. */
export function authenticatedOf(res: Response): Authenticated | null {
  return (res.locals.auth as Authenticated | undefined) ?? null;
}

/** The caller's identity; throws {@link UnauthenticatedError} when the request was not authenticated. */
export function identityOf(res: Response): Identity {
  const auth = authenticatedOf(res);
  if (auth === null) throw new UnauthenticatedError();
  return auth.identity;
}
