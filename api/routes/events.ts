/**
 * `GET /v1/events`: a Server-Sent Events stream of task changes the caller may see. With `Last-Event-ID`
 * (or `?last_event_id=`, for clients that cannot set headers) it first sends the current state of every
 * task that changed since that event, then goes on live.
 */
import { Router, type Request } from 'express';
import { canSee } from '../../domain/access';
import { TASK_EVENT } from '../../domain/events';
import { identityOf } from '../auth/context';
import type { AppDeps } from '../deps';
import { changedSince, TaskEventFeed, type FeedEvent } from '../events';

/** A comment line every so often keeps proxies from closing an idle stream. */
const HEARTBEAT_MS = 15_000;
/** What the browser waits before reconnecting a dropped stream. */
const RETRY_MS = 3_000;
/** An event id: the change's time in ms. */
const EVENT_ID = /^\d{1,15}$/;

/** The time `Last-Event-ID` names, or null when the client starts from now. */
function resumeFrom(req: Request): number | null {
  const given = req.get('last-event-id') ?? (typeof req.query.last_event_id === 'string' ? req.query.last_event_id : undefined);
  return given !== undefined && EVENT_ID.test(given) ? Number(given) : null;
}

/** The events route; one feed (one poller) for every client of this app. */
export function eventRoutes(deps: AppDeps): Router {
  const router = Router();
  const feed = new TaskEventFeed(deps.client, deps.log);

  router.get('/v1/events', async function streamEvents(req, res) {
    const identity = identityOf(res);
    const allow = (e: FeedEvent): boolean => canSee(identity, e.event.team);
    res.status(200).set({ 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.flushHeaders();
    res.write(`retry: ${RETRY_MS}\n\n`);
    // Per connection: the newest change sent of each task, so the catch-up and the live feed never repeat one.
    const sent = new Map<string, number>();
    const send = (e: FeedEvent): void => {
      if (!allow(e) || (sent.get(e.event.task_id) ?? -1) >= Number(e.id)) return;
      sent.set(e.event.task_id, Number(e.id));
      res.write(`id: ${e.id}\nevent: ${TASK_EVENT}\ndata: ${JSON.stringify(e.event)}\n\n`);
    };
    const buffered: FeedEvent[] = [];
    let live = false;
    const unsubscribe = feed.subscribe((e) => (live ? send(e) : buffered.push(e)));
    const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
    req.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
    });
    const since = resumeFrom(req);
    if (since !== null) {
      try {
        for (const e of await changedSince(deps.client, since)) send(e);
      } catch (err) {
        deps.log.warn('event catch-up failed', { error: err });
      }
    }
    live = true;
    for (const e of buffered.splice(0)) send(e);
  });

  return router;
}
