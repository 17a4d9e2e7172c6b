/**
 * The HTTP edge: `createApp(deps)` builds the express app without listening or connecting.
 */
import express from 'express';
import { authenticate } from './auth/authenticate';
import { csrfGuard } from './auth/csrf';
import { signInRoutes } from './routes/login';
import type { AppDeps } from './deps';
import { errorHandler, unknownRoute } from './errors';
import { requestContext } from './request';
import { decisionRoutes } from './routes/decisions';
import { healthRoutes } from './routes/health';
import { eventRoutes } from './routes/events';
import { githubWebhookRoutes } from './routes/github-webhook';
import { inboxRoutes } from './routes/inbox';
import { reviewRoutes } from './routes/review';
import { taskRoutes } from './routes/tasks';
import { webRoutes } from './web';

export type { AppDeps, ArtifactReader } from './deps';

/** Builds the v1 API over a Temporal client; side-effect free, so the caller decides when and where to listen. */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // Plain `key=value` pairs only: nested objects and arrays from `a[b]=c` never reach a schema.
  app.set('query parser', 'simple');
  app.use(requestContext(deps.log));
  app.use(healthRoutes(deps));
  // Authenticated by its signature, not a credential: one path and method, so it opens nothing else of /v1.
  app.use(githubWebhookRoutes(deps));
  // Every /v1 route needs a credential; health and liveness stay open for probes.
  app.use('/v1', authenticate(deps.auth.sources));
  const signIn = deps.auth.signIn;
  if (signIn) {
    // A cookie request that changes state must come from our own page; then the sign-in routes and /v1/me.
    app.use('/v1', csrfGuard(signIn.sessions, signIn.publicUrl));
    app.use(signInRoutes(signIn));
  }
  app.use(taskRoutes(deps));
  app.use(decisionRoutes(deps));
  app.use(inboxRoutes(deps));
  app.use(eventRoutes(deps));
  app.use(reviewRoutes(deps));
  app.use(webRoutes(deps.web));
  app.use(unknownRoute());
  app.use(errorHandler(deps.log));
  return app;
}
