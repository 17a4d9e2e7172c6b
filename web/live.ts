/**
 * Live updates: `GET /v1/events` (SSE, `event: task`) with reconnects. The browser resends `Last-Event-ID`
 * on its own reconnects; when the stream is refused outright it is retried with a growing delay.
 */
import type { TaskEvent } from './types';

/** Subscribes to task events; returns the unsubscribe function. `onState` says whether the stream is open. */
export function subscribeEvents(onEvent: (e: TaskEvent) => void, onState: (open: boolean) => void): () => void {
  let source: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let delay = 1_000;
  let stopped = false;
  const connect = (): void => {
    if (stopped) return;
    source = new EventSource('/v1/events', { withCredentials: true });
    source.addEventListener('open', () => {
      delay = 1_000;
      onState(true);
    });
    source.addEventListener('task', (m) => {
      try {
        onEvent(JSON.parse((m as MessageEvent<string>).data) as TaskEvent);
      } catch {
        // A malformed event is dropped; the next refresh shows the truth.
      }
    });
    source.addEventListener('error', () => {
      onState(false);
      // CLOSED: the browser gave up (a refusal, not a dropped connection): retry ourselves.
      if (source?.readyState === EventSource.CLOSED) {
        source.close();
        timer = setTimeout(connect, delay);
        delay = Math.min(delay * 2, 60_000);
      }
    });
  };
  connect();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    source?.close();
  };
}
