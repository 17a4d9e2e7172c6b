/**
 * The web inbox at `/`: the built front end (`dist/web`), served with a strict Content-Security-Policy and
 * cache headers; the single-page app's own routes fall back to its `index.html`. Never answers under `/v1`.
 */
import fs from 'node:fs';
import path from 'node:path';
import express, { Router, type Response } from 'express';
import { HttpError } from './errors';

/** Where the built front end is and what the server tells it. */
export interface WebOptions {
  /** The directory `npm run build` writes the front end to. Default: `dist/web`, next to the compiled API. */
  dir?: string;
  /** The Temporal UI a task page links to (its workflow at `<url>/namespaces/<ns>/workflows/<id>`). */
  temporalUiUrl?: string;
  namespace?: string;
}

/** No inline script or style, nothing from another origin, no framing, no plugins. */
export const WEB_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Paths the app routes itself (so a reload there shows the app); anything else stays a 404. */
const APP_ROUTES = /^\/(?:|inbox|submit|help|tasks\/[A-Za-z0-9._:-]{1,200})$/;

/** Security headers every response of the web inbox carries. */
function secure(res: Response): void {
  res.set({
    'Content-Security-Policy': WEB_CSP,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  });
}

/** Escape text for an HTML attribute value. */
function attr(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The front end's routes: hashed assets cached for a year, `index.html` revalidated on every load. */
export function webRoutes(opts: WebOptions = {}): Router {
  const dir = path.resolve(opts.dir ?? path.join(__dirname, '..', 'web'));
  const router = Router();
  let index: string | null = null;
  const indexHtml = (): string => {
    if (index !== null) return index;
    let html: string;
    try {
      html = fs.readFileSync(path.join(dir, 'index.html'), 'utf8');
    } catch (err) {
      throw new HttpError(503, 'web_not_built', 'the web inbox is not built: run `npm run build`', { cause: err });
    }
    index = html.replace('%TEMPORAL_UI_URL%', attr(opts.temporalUiUrl ?? '')).replace('%TEMPORAL_NAMESPACE%', attr(opts.namespace ?? 'default'));
    return index;
  };

  router.use('/assets', (_req, res, next) => {
    secure(res);
    next();
  });
  router.use(
    '/assets',
    express.static(path.join(dir, 'assets'), {
      index: false,
      dotfiles: 'deny',
      fallthrough: true,
      immutable: true,
      maxAge: '365d',
      setHeaders: (res) => res.setHeader('X-Content-Type-Options', 'nosniff'),
    }),
  );
  router.get(APP_ROUTES, function webApp(req, res) {
    secure(res);
    // An API client asking for JSON at an app path gets the 404 it would get anyway.
    if (!req.accepts('html')) {
      res.status(406).type('text/plain').send('the web inbox is HTML');
      return;
    }
    res.set('Cache-Control', 'no-cache').type('html').send(indexHtml());
  });
  return router;
}
