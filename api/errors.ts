/**
 * HTTP errors and the one middleware that turns any thrown error into a JSON response.
 */
import type { ErrorRequestHandler } from 'express';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { ZodError } from 'zod';
import type { Logger } from '../workers/log';

/** An error with an HTTP status and a stable machine-readable code; handlers throw these. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** 404 for a task id that names no workflow. */
export function taskNotFound(id: string, cause?: unknown): HttpError {
  return new HttpError(404, 'task_not_found', `no task ${id}`, undefined, { cause });
}

/** Update-validator failure types and the HTTP status each deserves. */
const DECISION_STATUS: Record<string, number> = {
  UnknownItem: 404,
  StaleDecision: 409,
  InvalidDecision: 409,
  TaskEnded: 409,
};

/** zod issues as `{path, message}` with dotted paths (`budget.max_steps`). */
export function zodDetails(err: ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}

/** The single place errors become responses; anything unexpected is a logged 500 with the request id. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return function handleError(err, req, res, _next) {
    const requestId = String(res.locals.requestId ?? '');
    const send = (status: number, code: string, message: string, details?: unknown): void => {
      res.status(status).json({ error: { code, message, ...(details === undefined ? {} : { details }), request_id: requestId } });
    };
    if (err instanceof HttpError) return send(err.status, err.code, err.message, err.details);
    if (err instanceof ZodError) return send(400, 'invalid_request', 'the request does not match the schema', zodDetails(err));
    // express.json() failures carry a `type` and an HTTP status.
    const bodyErr = err as { type?: string; status?: number; message?: string };
    if (bodyErr.type === 'entity.parse.failed') return send(400, 'invalid_json', `malformed JSON: ${bodyErr.message ?? ''}`);
    if (bodyErr.type === 'entity.too.large') return send(413, 'too_large', 'request body is too large');
    if (bodyErr.type === 'encoding.unsupported' || bodyErr.type === 'charset.unsupported') return send(415, 'unsupported_media_type', bodyErr.message ?? 'unsupported encoding');
    if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure) {
      const type = err.cause.type ?? 'InvalidDecision';
      return send(DECISION_STATUS[type] ?? 409, snake(type), err.cause.message);
    }
    if (err instanceof WorkflowNotFoundError) return send(404, 'task_not_found', err.message);
    if (err instanceof WorkflowExecutionAlreadyStartedError) return send(409, 'task_exists', err.message);
    log.error('request failed', { request_id: requestId, method: req.method, path: req.path, error: err });
    send(500, 'internal', 'internal error');
  };
}

function snake(type: string): string {
  return type.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}
