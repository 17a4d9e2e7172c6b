/**
 * Signing in to the web inbox: without an identity provider, the one-time link the backend prints or the local
 * admin token pasted into a form; with one, its OpenID Connect flow (see oidc-login.ts). Also signing out,
 * `GET /login/options` (how this backend signs people in, for the sign-in screen) and `GET /v1/me`, who the caller is.
 */
import express, { Router, type Request, type Response } from 'express';
import { authenticatedOf, identityOf } from '../auth/context';
import { CsrfError, ownOrigin } from '../auth/csrf';
import { LOCAL_ADMIN } from '../auth/local-admin';
import type { OidcSignIn } from '../auth/oidc';
import type { Sessions } from '../auth/session';
import { HttpError } from '../errors';
import { oidcLoginRoutes } from './oidc-login';

/** The local admin's ways in to the web inbox, when there is no identity provider. */
export interface LocalSignIn {
  /** Spends a one-time login code; true when it was good. */
  consumeLoginCode(code: string): boolean;
  /** Whether `token` is the local admin token. */
  isAdminToken(token: string): boolean;
}

/** What the sign-in routes need: the sessions, and either the local admin's ways in or the identity provider's flow. */
export interface SignInDeps {
  sessions: Sessions;
  local?: LocalSignIn;
  oidc?: OidcSignIn;
  publicUrl?: string;
}

/** `GET /login/options`: how this backend signs people in, for a sign-in screen that has no session yet. */
export interface SignInOptions {
  /** The identity provider's button: its name and where the flow starts; null without one. */
  idp: { name: string; url: string } | null;
  /** Whether the local admin's login link and token form are available. */
  local: boolean;
}

/** Thrown for a login link that was used, expired or never issued. */
export class LoginRefusedError extends HttpError {
  override readonly name = 'LoginRefusedError';
  constructor(message: string) {
    super(401, 'login_refused', message);
  }
}

/** The sign-in page: plain HTML, no script, posting the token form to this origin. */
const SIGN_IN_PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Agent Inbox: sign in</title></head>
<body><h1>Agent Inbox</h1>
<p>This backend has no identity provider. Open the one-time login link it printed when it started
(<code>login link: …/login/local?code=…</code>), or paste the admin token from <code>DATA_DIR/admin-token</code>:</p>
<form method="post" action="/login/token"><input type="password" name="token" autocomplete="off" size="60" aria-label="admin token">
<button type="submit">Sign in</button></form></body></html>`;

/** Security headers of the sign-in page. */
function pageHeaders(res: Response): void {
  res.set({
    'Content-Security-Policy': "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
  });
}

/** The sign-in routes and `GET /v1/me` (mounted after the `/v1` authentication). */
export function signInRoutes(deps: SignInDeps): Router {
  const router = Router();
  const form = express.urlencoded({ extended: false, limit: '4kb' });

  router.get('/login/options', function signInOptions(_req, res) {
    const options: SignInOptions = { idp: deps.oidc ? { name: deps.oidc.providerName, url: '/login/oidc' } : null, local: deps.local !== undefined };
    res.set('Cache-Control', 'no-store').json(options);
  });

  if (deps.oidc) router.use(oidcLoginRoutes({ sessions: deps.sessions, oidc: deps.oidc }));
  const local = deps.local;
  if (local) {
    router.get('/login', function signInPage(_req, res) {
      pageHeaders(res);
      res.type('html').send(SIGN_IN_PAGE);
    });

    router.get('/login/local', function loginLink(req: Request, res: Response) {
      const code = typeof req.query.code === 'string' ? req.query.code : '';
      if (!local.consumeLoginCode(code)) throw new LoginRefusedError('this login link was used already, has expired, or is not one this backend issued; sign in at /login');
      deps.sessions.start(res, LOCAL_ADMIN);
      res.set('Cache-Control', 'no-store').redirect(303, '/');
    });

    router.post('/login/token', form, function loginToken(req: Request, res: Response) {
      // Login CSRF: another site must not sign a browser in to this one.
      const origin = req.get('origin');
      if (origin !== undefined && origin !== ownOrigin(req, deps.publicUrl)) throw new CsrfError(`a form from ${origin} may not sign in here`);
      const token = typeof req.body?.token === 'string' ? req.body.token.trim() : '';
      if (!local.isAdminToken(token)) throw new LoginRefusedError('that is not the admin token in DATA_DIR/admin-token');
      deps.sessions.start(res, LOCAL_ADMIN);
      res.set('Cache-Control', 'no-store').redirect(303, '/');
    });
  }

  router.post('/v1/logout', function logout(_req, res) {
    const auth = authenticatedOf(res);
    if (auth?.carrier === 'cookie' && auth.sessionId !== undefined) deps.sessions.end(res, auth.sessionId);
    res.status(204).end();
  });

  router.get('/v1/me', function me(_req, res) {
    const identity = identityOf(res);
    const auth = authenticatedOf(res)!;
    res.set('Cache-Control', 'no-store').json({
      subject: identity.subject,
      name: identity.name,
      role: identity.role,
      teams: identity.teams,
      via: identity.via,
      csrf_token: auth.carrier === 'cookie' && auth.sessionId !== undefined ? deps.sessions.csrfToken(auth.sessionId) : null,
      idp: deps.oidc !== undefined,
    });
  });

  return router;
}
