/**
 * A loopback server speaking OpenAI's Chat Completions wire format, answering from a script, so the
 * real `openai` SDK can be tested without a network.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { answerAfter, startScriptedServer, type RecordedRequest } from './scripted-server';

export type { RecordedRequest } from './scripted-server';

/** A scripted model reply; a call's `rawArgs` is sent verbatim as `arguments` (to script malformed JSON). */
export interface OpenAIReply {
  text?: string;
  calls?: ({ name: string; id?: string } & ({ args: Record<string, unknown> } | { rawArgs: string }))[];
  usage?: { prompt: number; output: number; cached?: number };
  finishReason?: string;
  refusal?: string;
  /** Wait this long before answering (to test aborts). */
  delayMs?: number;
}

/** A scripted HTTP error; `body` replaces the OpenAI-style error body built from `status`. */
export interface OpenAIHttpError {
  status: number;
  body?: unknown;
  /** Seconds, sent as the `retry-after` header. */
  retryAfter?: number;
}

/** One scripted answer, or a function choosing it from the request body the SDK sent. */
export type OpenAITurn = OpenAIReply | OpenAIHttpError | ((requestBody: any) => OpenAIReply | OpenAIHttpError);

/** A running fake; `close` it in `after`. */
export interface FakeOpenAI {
  /** Server root; the SDK's base URL is `${url}/v1`. */
  url: string;
  apiKey: string;
  requests: RecordedRequest[];
  /** Queue answers for the next requests, in order. */
  script(turn: OpenAITurn | OpenAITurn[]): void;
  /** Scripted answers not yet used. */
  pending(): number;
  close(): Promise<void>;
}

function openaiError(message: string, type: string, code: string | null, param: string | null = null): unknown {
  return { error: { message, type, param, code } };
}

function defaultErrorBody(status: number): unknown {
  if (status === 429) {
    return openaiError('Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.', 'requests', 'rate_limit_exceeded');
  }
  if (status >= 500) return openaiError('The server had an error while processing your request. Sorry about that!', 'server_error', null);
  return openaiError(`Request failed with status ${status}.`, 'invalid_request_error', null);
}

function isHttpError(turn: OpenAIReply | OpenAIHttpError): turn is OpenAIHttpError {
  return typeof (turn as OpenAIHttpError).status === 'number';
}

function completionBody(reply: OpenAIReply, model: string): unknown {
  const usage = reply.usage ?? { prompt: 12, output: 5 };
  const toolCalls = (reply.calls ?? []).map((c) => ({
    id: c.id ?? `call_${randomBytes(12).toString('base64url')}`,
    type: 'function',
    function: { name: c.name, arguments: 'rawArgs' in c ? c.rawArgs : JSON.stringify(c.args) },
  }));
  return {
    id: `chatcmpl-${randomBytes(15).toString('base64url')}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: reply.text ?? null,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          refusal: reply.refusal ?? null,
          annotations: [],
        },
        logprobs: null,
        finish_reason: reply.finishReason ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop'),
      },
    ],
    usage: {
      prompt_tokens: usage.prompt,
      completion_tokens: usage.output,
      total_tokens: usage.prompt + usage.output,
      prompt_tokens_details: { cached_tokens: usage.cached ?? 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    service_tier: 'default',
    system_fingerprint: 'fp_fake0001',
  };
}

/**
 * Start the fake on a loopback port. It checks `Authorization: Bearer` like the real API (401
 * `invalid_api_key`) and answers 404 `model_not_found` for a model outside `models`; with the script
 * empty it answers 500 naming the request, so a test that scripted too few turns fails loudly.
 */
export async function startFakeOpenAI(opts: { apiKey?: string; models?: string[] } = {}): Promise<FakeOpenAI> {
  const apiKey = opts.apiKey ?? 'sk-fake-openai-key';
  const models = new Set(opts.models ?? ['gpt-4.1', 'gpt-4.1-mini', 'gpt-4o-mini']);

  const send = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': `req_${randomBytes(8).toString('hex')}`, ...headers });
    res.end(JSON.stringify(body));
  };

  const server = await startScriptedServer<OpenAITurn>((req, res, take, count) => {
    const body = req.body;
    if (req.method !== 'POST' || req.path !== '/v1/chat/completions') {
      send(res, 404, openaiError(`Invalid URL (${req.method} ${req.path})`, 'invalid_request_error', null));
      return;
    }
    const auth = req.headers.authorization;
    if (!auth) {
      send(
        res,
        401,
        openaiError(
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          'invalid_request_error',
          null,
        ),
      );
      return;
    }
    if (auth !== `Bearer ${apiKey}`) {
      const shown = auth.replace(/^Bearer\s+/, '');
      send(res, 401, openaiError(`Incorrect API key provided: ${shown.slice(0, 3)}***${shown.slice(-4)}.`, 'invalid_request_error', 'invalid_api_key'));
      return;
    }
    const model = typeof body === 'object' && body !== null ? String(body.model) : '';
    if (!models.has(model)) {
      send(res, 404, openaiError(`The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found'));
      return;
    }
    const next = take();
    if (next === undefined) {
      send(res, 500, openaiError(`fake-openai: no scripted turn left for request #${count} (POST ${req.path})`, 'server_error', null));
      return;
    }
    const turn = typeof next === 'function' ? next(body) : next;
    if (isHttpError(turn)) {
      send(res, turn.status, turn.body ?? defaultErrorBody(turn.status), turn.retryAfter === undefined ? {} : { 'retry-after': String(turn.retryAfter) });
      return;
    }
    const answer = (): void => send(res, 200, completionBody(turn, model));
    answerAfter(res, turn.delayMs, answer);
  });

  return { ...server, apiKey };
}
