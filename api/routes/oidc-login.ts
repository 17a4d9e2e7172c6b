/**
 * Signing people in through the identity provider: `/login` and `/login/oidc` send the browser there,
 * `/login/callback` brings it back and starts a session for the person the verified claims name.
 */
import { Router, type Request, type Response } from 'express';
import type { OidcSignIn } from '../auth/oidc';
import type { Sessions } from '../auth/session';

/** What the identity provider's sign-in routes need. */
export interface OidcLoginDeps {
  sessions: Sessions;
  oidc: OidcSignIn;
}

/** Headers of every step of the flow: nothing cached, and no code or state leaking through a Referer. */
function flowHeaders(res: Response): void {
  res.set({ 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer', 'X-Content-Type-Options': 'nosniff' });
}

/** The routes of the authorization code flow (mounted outside `/v1`: nobody is signed in yet). */
export function oidcLoginRoutes(deps: OidcLoginDeps): Router {
  const router = Router();

  router.get('/login', function signInAtProvider(_req, res) {
    flowHeaders(res);
    res.redirect(303, '/login/oidc');
  });

  router.get('/login/oidc', async function beginSignIn(_req, res) {
    flowHeaders(res);
    res.redirect(303, (await deps.oidc.begin(res)).href);
  });

  router.get('/login/callback', async function completeSignIn(req: Request, res: Response) {
    flowHeaders(res);
    const identity = await deps.oidc.complete(req, res);
    deps.sessions.start(res, identity);
    res.redirect(303, '/');
  });

  return router;
}
