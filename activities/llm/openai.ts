/**
 * {@link ModelClient} for OpenAI's Chat Completions API through the `openai` SDK, which self-hosted servers
 * (vLLM, llama.cpp, Ollama, LiteLLM) also speak: one request per call, SDK retries off (Temporal retries).
 */
import OpenAI, { APIConnectionError, APIError } from 'openai';
import { ModelAbortedError, ModelError, modelErrorKindForStatus, parseRetryAfter, type ModelClient } from './client';
import type { ModelErrorKind, ModelMessage, ModelRequest, ModelResponse, ToolCall } from './types';

/** Longest raw argument text kept in a {@link ToolCall.parse_error}. */
const MAX_RAW_ARGS = 2000;

/** Longest provider message carried into a {@link ModelError}. */
const MAX_ERROR_MESSAGE = 1000;

/** Talks to `baseURL` (OpenAI itself when unset) with a bearer key. */
export class OpenAICompatibleModelClient implements ModelClient {
  readonly provider = 'openai' as const;
  private readonly client: OpenAI;

  constructor(opts: { apiKey: string; baseURL?: string; organization?: string; project?: string }) {
    // Explicit nulls stop the SDK from falling back to its own reading of process.env.
    this.client = new OpenAI({
      apiKey: opts.apiKey,
      adminAPIKey: null,
      baseURL: opts.baseURL ?? null,
      organization: opts.organization ?? null,
      project: opts.project ?? null,
      maxRetries: 0,
    });
  }

  async generate(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> {
    let res: OpenAI.ChatCompletion;
    try {
      res = await this.client.chat.completions.create(
        {
          model: req.model,
          messages: toMessages(req.system, req.messages),
          // Some servers refuse an empty `tools` list, so a request without tools sends none.
          ...(req.tools.length > 0
            ? {
                tools: req.tools.map((t) => ({
                  type: 'function' as const,
                  function: { name: t.name, description: t.description, parameters: t.parameters },
                })),
              }
            : {}),
          // `max_tokens` rather than `max_completion_tokens`: self-hosted servers accept the older name.
          ...(req.max_output_tokens !== undefined ? { max_tokens: req.max_output_tokens } : {}),
          ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
        },
        signal ? { signal } : undefined,
      );
    } catch (err) {
      if (signal?.aborted) throw new ModelAbortedError('openai', { cause: err });
      throw toModelError(err);
    }
    return fromCompletion(res, req.model);
  }
}

function toMessages(system: string, messages: ModelMessage[]): OpenAI.ChatCompletionMessageParam[] {
  const out: OpenAI.ChatCompletionMessageParam[] = [];
  if (system) out.push({ role: 'system', content: system });
  for (const m of messages) {
    if (m.role === 'user') {
      out.push({ role: 'user', content: m.text });
    } else if (m.role === 'assistant') {
      if (m.tool_calls.length === 0) {
        out.push({ role: 'assistant', content: m.text });
        continue;
      }
      out.push({
        role: 'assistant',
        content: m.text || null,
        tool_calls: m.tool_calls.map((c) => ({
          id: c.id,
          type: 'function' as const,
          function: { name: c.name, arguments: JSON.stringify(c.args ?? {}) },
        })),
      });
    } else {
      for (const r of m.results) out.push({ role: 'tool', tool_call_id: r.id, content: r.output });
    }
  }
  return out;
}

/** The arguments of a call as an object, or null with the reason when they are not a JSON object. */
export function parseToolArguments(raw: string): { args: Record<string, unknown> } | { args: null; parse_error: string } {
  // Some servers send an empty string for a function that takes no parameters.
  if (raw.trim() === '') return { args: {} };
  const shown = raw.length > MAX_RAW_ARGS ? `${raw.slice(0, MAX_RAW_ARGS)}…` : raw;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    return { args: null, parse_error: `arguments are not valid JSON (${(err as Error).message}): ${shown}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const got = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`;
    return { args: null, parse_error: `arguments must be a JSON object, got ${got}: ${shown}` };
  }
  return { args: parsed as Record<string, unknown> };
}

function fromCompletion(res: OpenAI.ChatCompletion, requestedModel: string): ModelResponse {
  const choice = res.choices?.[0];
  if (!choice) throw new ModelError('unavailable', 'openai', 'openai returned a completion with no choices');
  const message = choice.message;
  const toolCalls: ToolCall[] = [];
  for (const call of message.tool_calls ?? []) {
    // Custom (free-text) tools are never declared by this client, so only function calls can come back.
    if (call.type !== 'function') continue;
    toolCalls.push({
      id: call.id || `call_${toolCalls.length + 1}`,
      name: call.function.name,
      ...parseToolArguments(call.function.arguments ?? ''),
    });
  }
  const text = message.content ?? '';
  if (!text && toolCalls.length === 0) {
    if (message.refusal) throw new ModelError('blocked', 'openai', `openai model refused: ${message.refusal.slice(0, MAX_ERROR_MESSAGE)}`);
    if (choice.finish_reason === 'content_filter') throw new ModelError('blocked', 'openai', 'openai withheld the reply (finish_reason content_filter)');
  }
  return {
    text,
    tool_calls: toolCalls,
    usage: {
      prompt_tokens: res.usage?.prompt_tokens ?? 0,
      output_tokens: res.usage?.completion_tokens ?? 0,
      cached_tokens: res.usage?.prompt_tokens_details?.cached_tokens ?? 0,
    },
    finish_reason: choice.finish_reason ?? '',
    model: res.model || requestedModel,
  };
}

function toModelError(err: unknown): ModelError {
  if (err instanceof ModelError) return err;
  if (err instanceof APIConnectionError) {
    return new ModelError('unavailable', 'openai', `openai request failed: ${err.message}`, { cause: err });
  }
  if (err instanceof APIError && err.status !== undefined) {
    // A 429 for an exhausted balance does not lift by waiting; a human has to pay, like a bad key.
    const kind: ModelErrorKind = err.code === 'insufficient_quota' ? 'auth' : modelErrorKindForStatus(err.status);
    const headers = err.headers;
    const retryAfterMsHeader = Number(headers?.get('retry-after-ms'));
    const retryAfterMs = Number.isFinite(retryAfterMsHeader) && retryAfterMsHeader > 0 ? Math.round(retryAfterMsHeader) : parseRetryAfter(headers?.get('retry-after'));
    const message = `openai ${err.message.slice(0, MAX_ERROR_MESSAGE)}${err.code ? ` (${err.code})` : ''}`;
    return new ModelError(kind, 'openai', message, { status: err.status, retryAfterMs, cause: err });
  }
  const reason = (err instanceof Error ? err.message : String(err)).slice(0, MAX_ERROR_MESSAGE);
  // A truncated or non-JSON success body may be fine next time; any other error is the SDK refusing the request.
  if (err instanceof SyntaxError || err instanceof TypeError) {
    return new ModelError('unavailable', 'openai', `openai request failed: ${reason}`, { cause: err });
  }
  return new ModelError('invalid_request', 'openai', `openai SDK refused the request: ${reason}`, { cause: err });
}
