/**
 * JSON request bodies: content type, size limit and syntax are checked here, so
 * a route's schema only ever sees parsed JSON (or `undefined` for no body).
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
