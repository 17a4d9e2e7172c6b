/**
 * Typed HTTP errors and the one middleware that turns any thrown error into a JSON response.
 *
 * Handlers and middleware throw; nothing else writes an error response.
 */
import {
  ApplicationFailure,
  isGrpcServiceError,
  ServiceError,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { z } from 'zod';
import type { Logger } from '../workers/log';
import type { DECISION_FAILURES } from '../workflows/messages';
import { requestIdOf } from './request';

/** One problem with one field of a request. */
export interface ErrorDetail {
  path: string;
  message: string;
}

/** An error with the HTTP status and stable `code` a client sees in `{error: {code, message, details?}}`. */
export class HttpError extends Error {
  override readonly name: string = 'HttpError';
  readonly details: ErrorDetail[] | undefined;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options: { cause?: unknown; details?: ErrorDetail[] } = {},
  ) {
    super(message, { cause: options.cause });
    this.details = options.details;
  }
}

/** Thrown when a request does not match its schema; `details` names each bad field by its dotted path. */
export class RequestValidationError extends HttpError {
  override readonly name = 'RequestValidationError';
  constructor(where: string, error: z.ZodError) {
    const details = zodDetails(error);
    const first = details[0];
    const more = details.length > 1 ? ` (and ${details.length - 1} more)` : '';
    const summary = first ? `${first.path ? `${first.path}: ` : ''}${first.message}${more}` : 'does not match the schema';
    super(400, 'invalid_request', `invalid ${where}: ${summary}`, { cause: error, details });
  }
}

/** Thrown when a body that claims to be JSON does not parse. */
export class InvalidJsonError extends HttpError {
  override readonly name = 'InvalidJsonError';
  constructor(cause: unknown) {
    super(400, 'invalid_json', 'request body is not valid JSON', { cause });
  }
}

/** Thrown when a body is larger than the configured limit. */
export class PayloadTooLargeError extends HttpError {
  override readonly name = 'PayloadTooLargeError';
  constructor(limit: number, cause?: unknown) {
    super(413, 'payload_too_large', `request body exceeds ${limit} bytes`, { cause });
  }
}

/** Thrown when a body is not `application/json` (or uses a charset other than UTF-8). */
export class UnsupportedMediaTypeError extends HttpError {
  override readonly name = 'UnsupportedMediaTypeError';
  constructor(message = 'request body must be application/json', cause?: unknown) {
    super(415, 'unsupported_media_type', message, { cause });
  }
}

/** Thrown when the thing a URL names does not exist (or cannot, given its format). */
export class NotFoundError extends HttpError {
  override readonly name = 'NotFoundError';
  constructor(code: string, message: string, cause?: unknown) {
    super(404, code, message, { cause });
  }
}

/** Thrown when a request conflicts with the task's current state or an earlier request. */
export class ConflictError extends HttpError {
  override readonly name = 'ConflictError';
  constructor(code: string, message: string, cause?: unknown) {
    super(409, code, message, { cause });
  }
}

/** A failure type a task workflow's update validators raise. */
type DecisionFailure = (typeof DECISION_FAILURES)[number];

/** Status per validator failure type; typed so a new type in the workflow fails the build until it is mapped here. */
const DECISION_FAILURE_STATUS: Readonly<Record<DecisionFailure, number>> = {
  TaskEnded: 409,
  UnknownItem: 404,
  StaleDecision: 409,
  InvalidDecision: 409,
  OverCeiling: 403,
  NeedsApprover: 403,
  NotThisPullRequest: 409,
  DuplicateDelivery: 409,
  ReviewRefused: 409,
};

/** A rejected update's status: as mapped above, else 409 (the task refused it in its current state). */
function decisionFailureStatus(type: string): number {
  return Object.hasOwn(DECISION_FAILURE_STATUS, type) ? DECISION_FAILURE_STATUS[type as DecisionFailure] : 409;
}

/** The server's NOT_FOUND message for an update or signal sent to a workflow that has closed. */
const WORKFLOW_COMPLETED = /workflow execution already completed/i;

/** Translate any thrown value into the HttpError a client should see; unknown errors become `null` (a 500). */
export function toHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof z.ZodError) return new RequestValidationError('request', err);
  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause;
    if (cause instanceof ApplicationFailure && cause.type) {
      return new HttpError(decisionFailureStatus(cause.type), snakeCase(cause.type), cause.message, { cause: err });
    }
    return null;
  }
  if (err instanceof WorkflowNotFoundError) {
    // Updates to a closed workflow fail with NOT_FOUND too; only the server's message tells the two apart.
    if (WORKFLOW_COMPLETED.test(err.message)) {
      return new ConflictError('task_ended', `task ${err.workflowId} has ended`, err);
    }
    return new NotFoundError('task_not_found', `no task ${err.workflowId}`, err);
  }
  if (err instanceof WorkflowExecutionAlreadyStartedError) {
    return new ConflictError('task_exists', `task ${err.workflowId} already exists`, err);
  }
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) {
    return new HttpError(504, 'timeout', 'the task did not answer in time; the request may still be applied', { cause: err });
  }
  if (err instanceof ServiceError && isUnavailable(err.cause)) {
    return new HttpError(503, 'temporal_unavailable', 'the workflow service is unreachable; retry later', { cause: err });
  }
  return null;
}

/** The error middleware: maps errors to `{error: {code, message, details?, request_id}}` and logs real faults. */
export function errorHandler(log: Logger): ErrorRequestHandler {
  return function handleError(err, req, res, next) {
    if (res.headersSent) {
      next(err);
      return;
    }
    const requestId = requestIdOf(res);
    const mapped = toHttpError(err);
    const http = mapped ?? new HttpError(500, 'internal', 'internal error', { cause: err });
    const attrs = { request_id: requestId, method: req.method, path: req.path, status: http.status, code: http.code };
    if (http.status >= 500) {
      log.error('request failed', { ...attrs, error: err });
    } else {
      log.debug('request refused', { ...attrs, message: http.message });
    }
    res.status(http.status).json({
      error: {
        code: http.code,
        message: http.message,
        ...(http.details ? { details: http.details } : {}),
        request_id: requestId,
      },
    });
  };
}

/** Zod issues as `{path, message}`, one entry per unknown key so each offending field is named. */
function zodDetails(error: z.ZodError): ErrorDetail[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: dotted([...issue.path, key]), message: 'unknown field' }));
    }
    return [{ path: dotted(issue.path), message: issue.message }];
  });
}

function dotted(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

function snakeCase(type: string): string {
  return type
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .toLowerCase();
}

/** gRPC status codes (a protocol constant; `@grpc/grpc-js` is not a direct dependency). */
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;

function isUnavailable(cause: unknown): boolean {
  return isGrpcServiceError(cause) && (cause.code === GRPC_UNAVAILABLE || cause.code === GRPC_DEADLINE_EXCEEDED);
}

/** Middleware answering any request no route took with a JSON 404. */
export function unknownRoute(): RequestHandler {
  return function noRoute(req, _res, next) {
    next(new NotFoundError('not_found', `no route for ${req.method} ${req.path}`));
  };
}
