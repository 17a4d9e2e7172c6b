/**
 * The web inbox at `/`: the built front end (`dist/web`), served with a strict Content-Security-Policy and
 * cache headers; the single-page app's own routes fall back to its `index.html`. Never answers under `/v1`.
 */
import fs from 'node:fs';
import path from 'node:path';
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import { FIRST_PAGE_LIMIT, inboxQueryString, PAGE_FILTER_KEYS, pageFilterOf } from '../domain/inbox-query';
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

/** How long a content-hashed asset may be cached: its name changes whenever its content does. */
const ASSET_MAX_AGE_S = 365 * 24 * 3600;

/** The compressed copies the build writes beside each script and stylesheet, best first. */
const ENCODINGS = [
  { name: 'br', ext: '.br' },
  { name: 'gzip', ext: '.gz' },
] as const;
const ASSET_TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
/** An asset name as the build writes it (no directories, no dot files). */
const ASSET_NAME = /^\/([A-Za-z0-9_-]+\.(?:js|css))$/;

/**
 * Serves a script or stylesheet from the brotli or gzip copy the build made, when the browser accepts that
 * encoding; anything else (or a browser that sends no Accept-Encoding) falls through to the plain file.
 */
function precompressed(assets: string) {
  // Which assets have which copies, read once from the build's directory (names from requests never grow it).
  let copies: Map<string, Set<string>> | null = null;
  const copiesOf = (name: string): Set<string> | undefined => {
    if (copies === null) {
      let files: string[];
      try {
        files = fs.readdirSync(assets);
      } catch {
        return undefined;
      }
      copies = new Map();
      for (const f of files) {
        const enc = ENCODINGS.find((e) => f.endsWith(e.ext));
        if (!enc) continue;
        const base = f.slice(0, -enc.ext.length);
        copies.set(base, (copies.get(base) ?? new Set()).add(enc.name));
      }
    }
    return copies.get(name);
  };
  return function servePrecompressed(req: Request, res: Response, next: NextFunction): void {
    const m = ASSET_NAME.exec(req.path);
    if (!m || (req.method !== 'GET' && req.method !== 'HEAD')) return next();
    const name = m[1]!;
    res.vary('Accept-Encoding');
    if (!req.headers['accept-encoding']) return next();
    const have = copiesOf(name);
    const enc = ENCODINGS.find((e) => have?.has(e.name) && req.acceptsEncodings(e.name) === e.name);
    if (!enc) return next();
    res.set({
      'Content-Type': ASSET_TYPES[path.extname(name)]!,
      'Content-Encoding': enc.name,
      'Cache-Control': `public, max-age=${ASSET_MAX_AGE_S}, immutable`,
    });
    res.sendFile(name + enc.ext, { root: assets, dotfiles: 'deny', cacheControl: false }, (err) => {
      // A copy gone since the build was read: the plain file (or the 404) answers instead.
      if (err && !res.headersSent) {
        res.removeHeader('Content-Encoding');
        res.removeHeader('Content-Type');
        next();
      }
    });
  };
}

/** Escape text for an HTML attribute value. */
function attr(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * `<link rel=preload>` for the reads the page's script starts first (`/v1/me`; on the inbox, its first page
 * for the URL's filters), so they leave while the script is still loading. `crossorigin` gives them the
 * credentials mode of the script's same-origin fetch, which the browser needs to hand them over.
 */
function preloads(req: Request): string {
  const urls = ['/v1/me'];
  if (req.path === '/') {
    const search = new URLSearchParams(req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '');
    const f = pageFilterOf(search);
    urls.push(`/v1/inbox?${inboxQueryString(f, PAGE_FILTER_KEYS, FIRST_PAGE_LIMIT)}`);
  }
  return urls.map((u) => `<link rel="preload" as="fetch" href="${attr(u)}" crossorigin="anonymous" />`).join('\n    ');
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
  router.use('/assets', precompressed(path.join(dir, 'assets')));
  router.use(
    '/assets',
    express.static(path.join(dir, 'assets'), {
      index: false,
      dotfiles: 'deny',
      fallthrough: true,
      immutable: true,
      maxAge: ASSET_MAX_AGE_S * 1000,
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
    res.set('Cache-Control', 'no-cache').type('html').send(indexHtml().replace('<!--%PRELOAD%-->', preloads(req)));
  });
  return router;
}
