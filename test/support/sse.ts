/**
 * A Server-Sent Events client over fetch for tests and benchmarks: reads `event: task` messages of
 * `GET /v1/events` as they arrive, and waits for one that matches.
 */

/** One task event as the stream delivered it, with when it arrived (performance.now()). */
export interface ReceivedEvent {
  id: string;
  data: any;
  at: number;
}

/** Opens the event stream of the API at `base` as the holder of `token`. */
export function listenEvents(base: string, token: string, lastEventId?: string) {
  const controller = new AbortController();
  const events: ReceivedEvent[] = [];
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
  let status = 0;
  let contentType = '';
  const opened = fetch(`${base}/v1/events`, { headers, signal: controller.signal }).then(async (res) => {
    status = res.status;
    contentType = res.headers.get('content-type') ?? '';
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (id !== undefined && data !== undefined && /^event: task$/m.test(block)) events.push({ id, data: JSON.parse(data), at: performance.now() });
        }
      }
    } catch {
      // Aborted by close().
    }
  });
  return {
    events,
    status: () => status,
    contentType: () => contentType,
    /** The first event received that matches, waiting up to `timeoutMs`. */
    async waitFor(match: (e: ReceivedEvent) => boolean, what: string, timeoutMs = 10_000): Promise<ReceivedEvent> {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const e = events.find(match);
        if (e) return e;
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error(`no event for ${what}; got ${JSON.stringify(events.map((e) => e.data.task_id))}`);
    },
    close: async () => {
      controller.abort();
      await opened.catch(() => undefined);
    },
  };
}
