/**
 * Request bodies: for JSON, content type, size limit and syntax are checked here, so a route's schema only
 * ever sees parsed JSON (or `undefined` for no body); a signed body is read as bytes, bounded the same way.
 */
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { HttpError, InvalidJsonError, PayloadTooLargeError, UnsupportedMediaTypeError } from './errors';

/** Default largest body `POST` routes accept. */
export const DEFAULT_MAX_BODY_BYTES = 512 * 1024;

/** Middleware parsing an `application/json` body of at most `limit` bytes; other content types get 415, no body leaves `req.body` undefined. */
export function jsonBody(limit: number = DEFAULT_MAX_BODY_BYTES): RequestHandler {
  // The content type is checked below, so the parser may accept whatever reaches it.
  const parse = express.json({ limit, strict: true, type: () => true });
  return function parseJsonBody(req: Request, res: Response, next: NextFunction): void {
    if (!hasBody(req)) {
      next();
      return;
    }
    if (!req.is('application/json')) {
      next(new UnsupportedMediaTypeError());
      return;
    }
    parse(req, res, (err?: unknown) => next(err === undefined ? undefined : bodyError(err, limit)));
  };
}

/**
 * Middleware reading the body as bytes, exactly as sent (no decompression), into `req.body` as a Buffer of at most
 * `limit` bytes (413 beyond); for a route that must check a signature over the raw body before parsing anything.
 */
export function rawBody(limit: number): RequestHandler {
  const read = express.raw({ limit, type: () => true, inflate: false });
  return function readRawBody(req: Request, res: Response, next: NextFunction): void {
    read(req, res, (err?: unknown) => next(err === undefined ? undefined : bodyError(err, limit)));
  };
}

/** The bytes {@link rawBody} read (empty when the request had no body). */
export function rawBodyOf(req: Request): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

/** An empty `Content-Length: 0` body counts as none, so a bare `POST …/cancel` needs no content type. */
function hasBody(req: Request): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && length !== '0';
}

/** The parser's errors carry a `type` (see body-parser's README); give each its HTTP error. */
function bodyError(err: unknown, limit: number): unknown {
  const { type, status, message } = (err ?? {}) as { type?: unknown; status?: unknown; message?: unknown };
  switch (type) {
    case 'entity.parse.failed':
      return new InvalidJsonError(err);
    case 'entity.too.large':
      return new PayloadTooLargeError(limit, err);
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return new UnsupportedMediaTypeError(typeof message === 'string' ? message : undefined, err);
    default:
      if (typeof status === 'number' && status >= 400 && status < 500) {
        return new HttpError(status, 'bad_request', typeof message === 'string' ? message : 'bad request body', { cause: err });
      }
      return err;
  }
}
