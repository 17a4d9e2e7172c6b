/**
 * The loopback skeleton the fake model servers share: it records every request (body parsed from
 * JSON), keeps a queue of scripted turns, and listens on 127.0.0.1. Each fake adds its wire format.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A request a fake received, body parsed from JSON (the raw text when it was not JSON). */
export interface RecordedRequest {
  /** When the request body had arrived (`performance.now()`). */
  at: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: any;
  /** The body exactly as it arrived (what a signature covers). */
  raw: string;
}

/** A running fake; `close` it in `after`. */
export interface ScriptedServer<Turn> {
  url: string;
  requests: RecordedRequest[];
  /** Queue answers for the next requests, in order. */
  script(turn: Turn | Turn[]): void;
  /** Scripted answers not yet used. */
  pending(): number;
  close(): Promise<void>;
}

/**
 * Starts a server that records each request and hands it to `handle` with `next`, which takes the
 * next scripted turn (undefined when the script is used up).
 */
export async function startScriptedServer<Turn>(
  handle: (req: RecordedRequest, res: http.ServerResponse, next: () => Turn | undefined, count: number) => void,
): Promise<ScriptedServer<Turn>> {
  const requests: RecordedRequest[] = [];
  const queue: Turn[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: any = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        // Not JSON: keep the text so the test can see what was sent.
      }
      const url = new URL(req.url ?? '/', 'http://fake');
      const recorded: RecordedRequest = { at: performance.now(), method: req.method ?? '', path: url.pathname, headers: req.headers, body, raw: text };
      requests.push(recorded);
      handle(recorded, res, () => queue.shift(), requests.length);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script(turn) {
      queue.push(...(Array.isArray(turn) ? turn : [turn]));
    },
    pending: () => queue.length,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** Sends `answer()` now, or after `delayMs`; a client that gives up first does not keep the timer alive. */
export function answerAfter(res: http.ServerResponse, delayMs: number | undefined, answer: () => void): void {
  if (!delayMs) return answer();
  const timer = setTimeout(answer, delayMs);
  res.on('close', () => clearTimeout(timer));
}
