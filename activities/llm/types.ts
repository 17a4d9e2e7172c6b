/**
 * The provider-neutral shapes of one model call: what the planner sends, what comes back, and how a
 * call can fail.
 *
 * Pure module (plain-JSON types and pure functions, no Node built-ins, no SDKs): workflow code imports
 * it to build requests and to read responses that travelled through Temporal history.
 */

/** One function call the model asked for. */
export interface ToolCall {
  /** The provider's call id, or a generated `call_<n>` when the provider sent none; tool results quote it. */
  id: string;
  name: string;
  /** Parsed arguments, or null when the model sent arguments that are not a JSON object. */
  args: Record<string, unknown> | null;
  /** Present when args is null: why, plus the raw text (bounded to 2000 chars). */
  parse_error?: string;
  /**
   * Gemini only: the opaque signature of the model's reasoning that came with this call. Gemini 3
   * rejects a conversation whose earlier function calls lost it, so it must be sent back verbatim.
   */
  thought_signature?: string;
}

/** One turn of the conversation, in the order the model saw them. */
export type ModelMessage =
  | { role: 'user'; text: string }
  | { role: 'assistant'; text: string; tool_calls: ToolCall[] }
  | { role: 'tool'; results: { id: string; name: string; output: string }[] };

/** A function the model may call. */
export interface ToolDeclaration {
  name: string;
  description: string;
  /** JSON Schema of an object. */
  parameters: Record<string, unknown>;
}

/** Everything one `generate` call sends: the whole conversation so far (the providers keep no state). */
export interface ModelRequest {
  model: string;
  system: string;
  messages: ModelMessage[];
  tools: ToolDeclaration[];
  max_output_tokens?: number;
  temperature?: number;
}

/** Tokens one call consumed; `cached_tokens` is the part of `prompt_tokens` served from the provider's cache. */
export interface ModelUsage {
  prompt_tokens: number;
  output_tokens: number;
  cached_tokens: number;
}

/** The model's reply to one request. */
export interface ModelResponse {
  text: string;
  tool_calls: ToolCall[];
  usage: ModelUsage;
  /** The provider's own value (`STOP`, `MAX_TOKENS`, `MALFORMED_FUNCTION_CALL`; `stop`, `tool_calls`, `length`). */
  finish_reason: string;
  /** The model that answered, as the provider names it (often a dated version of the requested one). */
  model: string;
}

/**
 * Why a model call failed: `auth` (credentials wrong, missing or unable to pay), `not_found` (no such model),
 * `rate_limited` (quota for now), `unavailable` (server error or network), `invalid_request` (the request
 * itself was refused), `blocked` (a safety filter withheld the reply).
 */
export const MODEL_ERROR_KINDS = ['auth', 'not_found', 'rate_limited', 'unavailable', 'invalid_request', 'blocked'] as const;

/** One of {@link MODEL_ERROR_KINDS}. */
export type ModelErrorKind = (typeof MODEL_ERROR_KINDS)[number];

/** Fixed per kind: only waiting can fix a rate limit or an outage; the others fail the same way again. */
const RETRYABLE: Readonly<Record<ModelErrorKind, boolean>> = {
  auth: false,
  not_found: false,
  rate_limited: true,
  unavailable: true,
  invalid_request: false,
  blocked: false,
};

/** True when a call that failed with `kind` may succeed if sent again later. */
export function isRetryableModelError(kind: ModelErrorKind): boolean {
  return RETRYABLE[kind];
}
