/**
 * A loopback server speaking the Gemini API's `generateContent` wire format, answering from a script,
 * so the real `@google/genai` SDK can be tested without a network.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { answerAfter, startScriptedServer, type RecordedRequest } from './scripted-server';

export type { RecordedRequest } from './scripted-server';

/** A scripted model reply; `usage` defaults to small non-zero counts. */
export interface GeminiReply {
  text?: string;
  calls?: { name: string; args?: Record<string, unknown>; id?: string; thoughtSignature?: string }[];
  usage?: { prompt: number; output: number; cached?: number; thoughts?: number };
  finishReason?: string;
  /** `prompt`: no candidate, promptFeedback.blockReason SAFETY; `response`: a candidate with finishReason SAFETY and no content. */
  blocked?: 'prompt' | 'response';
  /** Wait this long before answering (to test aborts). */
  delayMs?: number;
}

/** A scripted HTTP error; `body` replaces the Google-style error body built from `status`. */
export interface GeminiHttpError {
  status: number;
  body?: unknown;
  /** Seconds, sent the way Google sends it: a google.rpc.RetryInfo detail in the body. */
  retryAfter?: number;
}

/** One scripted answer, or a function choosing it from the request body the SDK sent. */
export type GeminiTurn = GeminiReply | GeminiHttpError | ((requestBody: any) => GeminiReply | GeminiHttpError);

/** A running fake; `close` it in `after`. */
export interface FakeGemini {
  /** Base URL to give the SDK (`httpOptions.baseUrl` or `GOOGLE_GEMINI_BASE_URL`). */
  url: string;
  apiKey: string;
  requests: RecordedRequest[];
  /** Queue answers for the next requests, in order. */
  script(turn: GeminiTurn | GeminiTurn[]): void;
  /** Scripted answers not yet used. */
  pending(): number;
  close(): Promise<void>;
}

const GOOGLE_STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

function googleError(code: number, message: string, details?: unknown[]): unknown {
  return { error: { code, message, status: GOOGLE_STATUS[code] ?? 'UNKNOWN', ...(details ? { details } : {}) } };
}

function defaultErrorBody(status: number, retryAfter?: number): unknown {
  const details = retryAfter === undefined ? undefined : [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${retryAfter}s` }];
  if (status === 429) {
    return googleError(429, 'You exceeded your current quota, please check your plan and billing details.', details);
  }
  if (status >= 500) return googleError(status, 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting', details);
  return googleError(status, `Request failed with status ${status}.`, details);
}

function isHttpError(turn: GeminiReply | GeminiHttpError): turn is GeminiHttpError {
  return typeof (turn as GeminiHttpError).status === 'number';
}

function replyBody(reply: GeminiReply, model: string): unknown {
  const usage = reply.usage ?? { prompt: 12, output: 5 };
  const usageMetadata = {
    promptTokenCount: usage.prompt,
    candidatesTokenCount: usage.output,
    totalTokenCount: usage.prompt + usage.output + (usage.thoughts ?? 0),
    ...(usage.cached ? { cachedContentTokenCount: usage.cached } : {}),
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: usage.prompt }],
    ...(usage.cached ? { cacheTokensDetails: [{ modality: 'TEXT', tokenCount: usage.cached }] } : {}),
    ...(usage.thoughts ? { thoughtsTokenCount: usage.thoughts } : {}),
  };
  const responseId = randomBytes(12).toString('base64url');
  if (reply.blocked === 'prompt') {
    return {
      promptFeedback: {
        blockReason: 'SAFETY',
        safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH' }],
      },
      usageMetadata: { promptTokenCount: usage.prompt, totalTokenCount: usage.prompt },
      modelVersion: model,
      responseId,
    };
  }
  if (reply.blocked === 'response') {
    return {
      candidates: [
        {
          finishReason: 'SAFETY',
          index: 0,
          safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }],
        },
      ],
      usageMetadata: { promptTokenCount: usage.prompt, totalTokenCount: usage.prompt },
      modelVersion: model,
      responseId,
    };
  }
  const parts: unknown[] = [];
  if (reply.text !== undefined) parts.push({ text: reply.text });
  for (const call of reply.calls ?? []) {
    parts.push({
      functionCall: { ...(call.id ? { id: call.id } : {}), name: call.name, args: call.args ?? {} },
      ...(call.thoughtSignature ? { thoughtSignature: call.thoughtSignature } : {}),
    });
  }
  return {
    candidates: [{ content: { parts, role: 'model' }, finishReason: reply.finishReason ?? 'STOP', index: 0 }],
    usageMetadata,
    modelVersion: model,
    responseId,
  };
}

/**
 * Start the fake on a loopback port. It checks `x-goog-api-key` like the real API (400
 * INVALID_ARGUMENT / API_KEY_INVALID for a wrong key, 403 for none) and answers 404 NOT_FOUND for a
 * model outside `models`; with the script empty it answers 500 naming the request, so a test that
 * scripted too few turns fails loudly.
 */
export async function startFakeGemini(opts: { apiKey?: string; models?: string[] } = {}): Promise<FakeGemini> {
  const apiKey = opts.apiKey ?? 'fake-gemini-key';
  const models = new Set(opts.models ?? ['gemini-2.5-flash', 'gemini-2.5-pro', 'gemini-3-pro-preview']);

  const send = (res: http.ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  };

  const server = await startScriptedServer<GeminiTurn>((req, res, take, count) => {
    const body = req.body;
    const route = /^\/v1beta\/models\/([^/:]+):generateContent$/.exec(req.path);
    if (req.method !== 'POST' || !route) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end(`fake-gemini: no route for ${req.method} ${req.path}`);
      return;
    }
    const key = req.headers['x-goog-api-key'];
    if (key === undefined) {
      send(res, 403, googleError(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."));
      return;
    }
    if (key !== apiKey) {
      send(
        res,
        400,
        googleError(400, 'API key not valid. Please pass a valid API key.', [
          { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: 'generativelanguage.googleapis.com' } },
          { '@type': 'type.googleapis.com/google.rpc.LocalizedMessage', locale: 'en-US', message: 'API key not valid. Please pass a valid API key.' },
        ]),
      );
      return;
    }
    const model = decodeURIComponent(route[1]!);
    if (!models.has(model)) {
      send(res, 404, googleError(404, `models/${model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`));
      return;
    }
    const next = take();
    if (next === undefined) {
      send(res, 500, googleError(500, `fake-gemini: no scripted turn left for request #${count} (POST ${req.path})`));
      return;
    }
    const turn = typeof next === 'function' ? next(body) : next;
    if (isHttpError(turn)) {
      send(res, turn.status, turn.body ?? defaultErrorBody(turn.status, turn.retryAfter));
      return;
    }
    const answer = (): void => send(res, 200, replyBody(turn, model));
    answerAfter(res, turn.delayMs, answer);
  });

  return { ...server, apiKey };
}
