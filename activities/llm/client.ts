/**
 * The one interface the planner calls a model through, its typed errors, and the factory that builds a
 * provider's client from the environment the way that provider's own SDK reads it.
 */
import { GeminiModelClient } from './gemini';
import { OpenAICompatibleModelClient } from './openai';
import { isRetryableModelError, type ModelErrorKind, type ModelRequest, type ModelResponse } from './types';

/** The providers a {@link ModelClient} can talk to; `openai` covers any server speaking its Chat Completions API. */
export type ModelProvider = 'gemini' | 'openai';

/** Sends one request to a model and returns its reply; one call is one HTTP request, never retried here. */
export interface ModelClient {
  readonly provider: ModelProvider;
  /** Rejects with {@link ModelError}, or with {@link ModelAbortedError} once `signal` aborts. */
  generate(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse>;
}

/** Thrown when a model call fails; `retryable` is fixed by `kind`, and retrying is left to Temporal. */
export class ModelError extends Error {
  override readonly name = 'ModelError';
  readonly retryable: boolean;
  /** The HTTP status the provider answered with, when there was an answer. */
  readonly status?: number;
  /** How long the provider asked us to wait before trying again, when it said. */
  readonly retryAfterMs?: number;

  constructor(
    readonly kind: ModelErrorKind,
    readonly provider: ModelProvider,
    message: string,
    opts: { status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.retryable = isRetryableModelError(kind);
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }
}

/**
 * Thrown when the caller's signal aborts a call; named `AbortError` because that is how the Temporal
 * worker recognises an activity that ended because it was cancelled.
 */
export class ModelAbortedError extends Error {
  override readonly name = 'AbortError';
  constructor(
    readonly provider: ModelProvider,
    options?: { cause?: unknown },
  ) {
    super(`${provider} model call aborted`, options);
  }
}

/** The error kind an HTTP status means, the same for every provider. */
export function modelErrorKindForStatus(status: number): ModelErrorKind {
  if (status === 401 || status === 403) return 'auth';
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limited';
  // 408 and 409 are the server giving up on this attempt (timeout, concurrent request), not a bad request.
  if (status === 408 || status === 409 || status >= 500) return 'unavailable';
  return 'invalid_request';
}

/** Milliseconds from an HTTP `Retry-After` value (delta-seconds or an HTTP date), or undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Environment variables as `process.env` holds them. */
export type Env = Readonly<Record<string, string | undefined>>;

function nonEmpty(value: string | undefined): string | undefined {
  const v = value?.trim();
  return v ? v : undefined;
}

/**
 * Build the client for `provider` from `env`, reading the variables that provider's SDK reads:
 * Gemini `GOOGLE_API_KEY` or `GEMINI_API_KEY` (the SDK prefers `GOOGLE_API_KEY` when both are set) and
 * `GOOGLE_GEMINI_BASE_URL`; OpenAI-compatible `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID` and
 * `OPENAI_PROJECT_ID`. A missing key throws a {@link ModelError} of kind `auth` naming the variable.
 */
export function createModelClient(provider: ModelProvider, env: Env = process.env): ModelClient {
  if (provider === 'gemini') {
    const apiKey = nonEmpty(env.GOOGLE_API_KEY) ?? nonEmpty(env.GEMINI_API_KEY);
    if (!apiKey) {
      throw new ModelError('auth', 'gemini', 'GEMINI_API_KEY is not set (GOOGLE_API_KEY is accepted too): the Gemini API needs an API key');
    }
    return new GeminiModelClient({ apiKey, baseUrl: nonEmpty(env.GOOGLE_GEMINI_BASE_URL) });
  }
  const apiKey = nonEmpty(env.OPENAI_API_KEY);
  if (!apiKey) {
    throw new ModelError(
      'auth',
      'openai',
      'OPENAI_API_KEY is not set: an OpenAI-compatible server needs an API key (set any placeholder for a server that checks none)',
    );
  }
  return new OpenAICompatibleModelClient({
    apiKey,
    baseURL: nonEmpty(env.OPENAI_BASE_URL),
    organization: nonEmpty(env.OPENAI_ORG_ID),
    project: nonEmpty(env.OPENAI_PROJECT_ID),
  });
}
