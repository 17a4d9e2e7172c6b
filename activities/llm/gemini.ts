/**
 * {@link ModelClient} for the Gemini API through the `@google/genai` SDK: one `generateContent` request per
 * call, with the SDK's automatic function calling off and no SDK retries (Temporal retries activities).
 */
import { ApiError, GoogleGenAI, type Content, type GenerateContentResponse, type Part } from '@google/genai';
import { ModelAbortedError, ModelError, modelErrorKindForStatus, type ModelClient } from './client';
import type { ModelMessage, ModelRequest, ModelResponse, ToolCall } from './types';

/** Finish reasons that mean a filter withheld the reply rather than the model ending it. */
const BLOCKING_FINISH_REASONS = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
]);

/** Longest provider message carried into a {@link ModelError}. */
const MAX_ERROR_MESSAGE = 1000;

/** Talks to the Gemini API (or anything serving its REST surface at `baseUrl`) with an API key. */
export class GeminiModelClient implements ModelClient {
  readonly provider = 'gemini' as const;
  private readonly ai: GoogleGenAI;

  constructor(opts: { apiKey: string; baseUrl?: string }) {
    // `vertexai: false` so GOOGLE_GENAI_USE_VERTEXAI in the process environment cannot switch backends;
    // no `retryOptions`, so the SDK sends each request exactly once.
    this.ai = new GoogleGenAI({
      vertexai: false,
      apiKey: opts.apiKey,
      ...(opts.baseUrl ? { httpOptions: { baseUrl: opts.baseUrl } } : {}),
    });
  }

  async generate(req: ModelRequest, signal?: AbortSignal): Promise<ModelResponse> {
    let res: GenerateContentResponse;
    try {
      res = await this.ai.models.generateContent({
        model: req.model,
        contents: toContents(req.messages),
        config: {
          ...(req.system ? { systemInstruction: req.system } : {}),
          ...(req.tools.length > 0
            ? {
                tools: [
                  {
                    functionDeclarations: req.tools.map((t) => ({
                      name: t.name,
                      description: t.description,
                      parametersJsonSchema: t.parameters,
                    })),
                  },
                ],
              }
            : {}),
          ...(req.max_output_tokens !== undefined ? { maxOutputTokens: req.max_output_tokens } : {}),
          ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
          automaticFunctionCalling: { disable: true },
          ...(signal ? { abortSignal: signal } : {}),
        },
      });
    } catch (err) {
      if (signal?.aborted) throw new ModelAbortedError('gemini', { cause: err });
      throw toModelError(err);
    }
    return fromResponse(res, req.model);
  }
}

/** Gemini `contents` for a conversation: the model's turns are role `model`, tool results go back as a `user` turn. */
function toContents(messages: ModelMessage[]): Content[] {
  const contents: Content[] = [];
  for (const m of messages) {
    if (m.role === 'user') {
      contents.push({ role: 'user', parts: [{ text: m.text }] });
    } else if (m.role === 'assistant') {
      const parts: Part[] = [];
      if (m.text) parts.push({ text: m.text });
      for (const call of m.tool_calls) {
        parts.push({
          functionCall: { id: call.id, name: call.name, args: call.args ?? {} },
          ...(call.thought_signature ? { thoughtSignature: call.thought_signature } : {}),
        });
      }
      // The API refuses a turn with no parts (or an empty text part); a silent turn carries nothing anyway.
      if (parts.length > 0) contents.push({ role: 'model', parts });
    } else {
      contents.push({
        role: 'user',
        parts: m.results.map((r) => ({ functionResponse: { id: r.id, name: r.name, response: { output: r.output } } })),
      });
    }
  }
  return contents;
}

function fromResponse(res: GenerateContentResponse, requestedModel: string): ModelResponse {
  const candidate = res.candidates?.[0];
  const parts = candidate?.content?.parts ?? [];
  const finishReason = candidate?.finishReason ?? '';
  if (!candidate) {
    const why = res.promptFeedback?.blockReason;
    const detail = res.promptFeedback?.blockReasonMessage;
    throw new ModelError('blocked', 'gemini', `gemini returned no candidate${why ? `: prompt blocked (${why})` : ''}${detail ? `: ${detail}` : ''}`);
  }
  if (parts.length === 0 && BLOCKING_FINISH_REASONS.has(finishReason)) {
    throw new ModelError('blocked', 'gemini', `gemini withheld the reply (finishReason ${finishReason})${candidate.finishMessage ? `: ${candidate.finishMessage}` : ''}`);
  }
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const part of parts) {
    // Thought summaries are the model's reasoning, not its reply.
    if (part.thought) continue;
    if (part.functionCall) {
      const fc = part.functionCall;
      toolCalls.push({
        id: fc.id || `call_${toolCalls.length + 1}`,
        name: fc.name ?? '',
        args: fc.args ?? {},
        ...(part.thoughtSignature ? { thought_signature: part.thoughtSignature } : {}),
      });
    } else if (typeof part.text === 'string') {
      text += part.text;
    }
  }
  const u = res.usageMetadata;
  return {
    text,
    tool_calls: toolCalls,
    usage: {
      // Tool-use prompt tokens and thinking tokens are billed as input and output respectively.
      prompt_tokens: (u?.promptTokenCount ?? 0) + (u?.toolUsePromptTokenCount ?? 0),
      output_tokens: (u?.candidatesTokenCount ?? 0) + (u?.thoughtsTokenCount ?? 0),
      cached_tokens: u?.cachedContentTokenCount ?? 0,
    },
    finish_reason: finishReason,
    model: res.modelVersion ?? requestedModel,
  };
}

/** The `error` object of a Google API error body, which `ApiError` carries as its JSON-encoded message. */
interface GoogleErrorBody {
  message?: string;
  status?: string;
  details?: { '@type'?: string; reason?: string; retryDelay?: string }[];
}

function parseErrorBody(message: string): GoogleErrorBody | undefined {
  try {
    const parsed = JSON.parse(message) as unknown;
    const body = Array.isArray(parsed) ? parsed[0] : parsed;
    const error = (body as { error?: unknown } | null)?.error;
    return error && typeof error === 'object' ? (error as GoogleErrorBody) : undefined;
  } catch {
    return undefined;
  }
}

/** A protobuf Duration in JSON form (`"27s"`, `"0.5s"`) in milliseconds. */
function durationMs(value: string | undefined): number | undefined {
  const m = value ? /^(\d+(?:\.\d+)?)s$/.exec(value.trim()) : null;
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

function toModelError(err: unknown): ModelError {
  if (err instanceof ModelError) return err;
  if (err instanceof ApiError) {
    const body = parseErrorBody(err.message);
    const reasons = (body?.details ?? []).map((d) => d.reason).filter(Boolean);
    // A wrong or expired key is a 400 INVALID_ARGUMENT whose ErrorInfo reason is API_KEY_INVALID.
    const kind = err.status === 400 && (reasons.includes('API_KEY_INVALID') || err.message.includes('API_KEY_INVALID')) ? 'auth' : modelErrorKindForStatus(err.status);
    // Google sends no Retry-After header; a 429 says how long to wait in a google.rpc.RetryInfo detail.
    const retryDelay = body?.details?.find((d) => d['@type']?.endsWith('google.rpc.RetryInfo'))?.retryDelay;
    const summary = body?.message ?? err.message;
    const message = `gemini ${err.status}${body?.status ? ` ${body.status}` : ''}: ${summary.slice(0, MAX_ERROR_MESSAGE)}`;
    return new ModelError(kind, 'gemini', message, { status: err.status, retryAfterMs: durationMs(retryDelay), cause: err });
  }
  const reason = (err instanceof Error ? err.message : String(err)).slice(0, MAX_ERROR_MESSAGE);
  // fetch reports a refused or dropped connection as a TypeError, and a truncated body fails to parse;
  // both may pass on another try. Any other error is the SDK refusing the request before sending it.
  if (err instanceof TypeError || err instanceof SyntaxError) {
    return new ModelError('unavailable', 'gemini', `gemini request failed: ${reason}`, { cause: err });
  }
  return new ModelError('invalid_request', 'gemini', `gemini SDK refused the request: ${reason}`, { cause: err });
}
