/**
 * The inbox: pending items grouped by kind, filtered, in the server's order; keyboard driven; refreshed by
 * live events (and by a slower poll while the event stream is down).
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { forgetTask } from '../detail-cache';
import { FIRST_LIMIT, FULL_LIMIT, filterFromUrl, loadInbox, type InboxFilter } from '../inbox-data';
import { KINDS } from '../kinds';
import { subscribeEvents } from '../live';
import { disableNotifications, enableNotifications, notificationsOn, notifyNewItem } from '../notify';
import { navigate } from '../router';
import type { InboxEntry, TaskEvent } from '../types';
import { Card } from './Card';
import type { KeyCommand } from './DecisionBar';
import { Filters } from './Filters';
import { Help } from './Help';

/** How often the list is re-read while the event stream is not connected, and while it is. */
const POLL_DOWN_MS = 5_000;
const POLL_UP_MS = 60_000;

/** Cards a group shows before its "show more": a backlog of a thousand still renders its first card at once. */
const GROUP_PAGE = 50;

const keyOf = (e: InboxEntry): string => `${e.task_id}/${e.item_id}`;

/** How long a card someone just decided stays in place, showing the result, after the server stops listing it. */
const SETTLED_SHOW_MS = 10_000;

/** Events arriving this close together (one poll of the server's feed sends them back to back) become one read. */
const EVENT_BURST_MS = 40;
/** How long an item an event reported settled is kept out of listings read before that event reached the server. */
const GONE_KEEP_MS = 60_000;

/** The keys of a task's cards that `ev` shows are no longer pending (item ids are never reused). */
function settledBy(ev: TaskEvent, shown: InboxEntry[]): string[] {
  const pending = new Set(ev.ended ? [] : ev.items.map((i) => i.item_id));
  return shown.filter((e) => e.task_id === ev.task_id && !pending.has(e.item_id)).map(keyOf);
}

/** `next` with each recently decided card the server no longer lists put back where it was in `prev`. */
function keepSettled(next: InboxEntry[], prev: InboxEntry[], settled: Map<string, number>, now: number): InboxEntry[] {
  for (const [k, until] of settled) if (until <= now) settled.delete(k);
  const listed = new Set(next.map(keyOf));
  const merged = [...next];
  prev.forEach((e, i) => {
    if (settled.has(keyOf(e)) && !listed.has(keyOf(e))) merged.splice(Math.min(i, merged.length), 0, e);
  });
  return merged;
}

/** The inbox page. */
export function InboxPage() {
  const [filter, setFilter] = useState<InboxFilter>(() => filterFromUrl(location.search));
  const [items, setItems] = useState<InboxEntry[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState(0);
  const [command, setCommand] = useState<KeyCommand | undefined>(undefined);
  const [help, setHelp] = useState(false);
  const [live, setLive] = useState(false);
  const [notify, setNotify] = useState(notificationsOn());
  const [shown, setShown] = useState<Record<string, number>>({});
  const seen = useRef<Set<string> | null>(null);
  // Cards decided here, until when they stay: a live event must not whisk away the result of one's own click.
  const settled = useRef(new Map<string, number>());
  // Items events reported settled, until when: a listing read just before the event must not bring them back.
  const gone = useRef(new Map<string, number>());
  const itemsRef = useRef<InboxEntry[]>([]);
  const filterRef = useRef(filter);
  filterRef.current = filter;

  const firstRead = useRef(true);
  const refresh = useCallback(async (): Promise<void> => {
    try {
      // The first read of a page load is short, so the first cards paint at once; the rest follows.
      const limit = firstRead.current ? FIRST_LIMIT : FULL_LIMIT;
      firstRead.current = false;
      const read = await loadInbox(filterRef.current, limit);
      const now = Date.now();
      for (const [k, until] of gone.current) if (until <= now) gone.current.delete(k);
      const next = read.items.filter((e) => !gone.current.has(keyOf(e)));
      if (seen.current !== null) {
        for (const e of next) if (!seen.current.has(keyOf(e))) notifyNewItem(`New: ${e.title}`, e.repo ?? '', () => navigate(`/tasks/${e.task_id}`));
      }
      seen.current = new Set(next.map(keyOf));
      const shownNow = keepSettled(next, itemsRef.current, settled.current, now);
      itemsRef.current = shownNow;
      setItems(shownNow);
      setError(null);
      if (read.more && limit < FULL_LIMIT) void refresh();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }, []);

  useEffect(() => {
    void refresh();
  }, [filter, refresh]);


  useEffect(() => {
    let pending: ReturnType<typeof setTimeout> | null = null;
    const unsubscribe = subscribeEvents(
      (ev) => {
        forgetTask(ev.task_id);
        // A card whose item the event shows settled goes at once (one decided here stays, with its result);
        // new or moved items wait for the read, which knows the order and the filters.
        const now = Date.now();
        const drop = new Set(settledBy(ev, itemsRef.current).filter((k) => (settled.current.get(k) ?? 0) <= now));
        if (drop.size > 0) {
          for (const k of drop) gone.current.set(k, now + GONE_KEEP_MS);
          itemsRef.current = itemsRef.current.filter((e) => !drop.has(keyOf(e)));
          setItems(itemsRef.current);
        }
        if (pending === null) pending = setTimeout(() => ((pending = null), void refresh()), EVENT_BURST_MS);
      },
      (open) => setLive(open),
    );
    return () => {
      unsubscribe();
      if (pending !== null) clearTimeout(pending);
    };
  }, [refresh]);

  useEffect(() => {
    const t = setInterval(() => void refresh(), live ? POLL_UP_MS : POLL_DOWN_MS);
    const onFocus = (): void => void refresh();
    addEventListener('focus', onFocus);
    return () => {
      clearInterval(t);
      removeEventListener('focus', onFocus);
    };
  }, [live, refresh]);

  // Cards in display order (grouped by kind), for j/k.
  const ordered = items ? KINDS.flatMap((k) => items.filter((e) => e.kind === k.kind).slice(0, shown[k.kind] ?? GROUP_PAGE)) : [];
  const current = ordered[Math.min(selected, ordered.length - 1)];

  // Keys read the latest list and cursor from refs: a fast "j j a" must act on the card the cursor reached,
  // not on the one the last rendered handler knew.
  const orderedRef = useRef(ordered);
  orderedRef.current = ordered;
  const cursor = useRef(0);
  const select = (i: number): void => {
    cursor.current = Math.max(0, Math.min(i, orderedRef.current.length - 1));
    setSelected(cursor.current);
  };
  useEffect(() => {
    const onKey = (ev: KeyboardEvent): void => {
      const t = ev.target as HTMLElement | null;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) {
        if (ev.key === 'Escape') t.blur();
        return;
      }
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const list = orderedRef.current;
      const at = list[Math.min(cursor.current, list.length - 1)];
      if (ev.key === '?') setHelp((h) => !h);
      else if (ev.key === 'Escape') setHelp(false);
      else if (ev.key === 'j') select(cursor.current + 1);
      else if (ev.key === 'k') select(cursor.current - 1);
      else if (ev.key === 'Enter' && at) navigate(`/tasks/${encodeURIComponent(at.task_id)}`);
      else if (ev.key === 'a' || ev.key === 'r' || ev.key === 'c') {
        const action = ev.key === 'a' ? 'approve' : ev.key === 'r' ? 'reject' : 'request_changes';
        if (at) setCommand((c) => ({ action, seq: (c?.seq ?? 0) + 1, target: keyOf(at) }));
      } else return;
      ev.preventDefault();
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);

  const deciding = (e: InboxEntry): void => {
    settled.current.set(keyOf(e), Date.now() + SETTLED_SHOW_MS);
  };
  const decided = (e: InboxEntry): void => {
    settled.current.set(keyOf(e), Date.now() + SETTLED_SHOW_MS);
    forgetTask(e.task_id);
    setTimeout(() => void refresh(), 800);
  };

  return (
    <main class="inbox" data-testid="inbox">
      <div class="toolbar">
        <Filters value={filter} onChange={setFilter} />
        <span class={`live ${live ? 'on' : 'off'}`} data-testid="live" title={live ? 'live updates on' : 'live updates reconnecting; polling'}>
          {live ? '● live' : '○ polling'}
        </span>
        <button
          type="button"
          class="link"
          data-testid="notify-toggle"
          onClick={async () => {
            if (notify) {
              disableNotifications();
              setNotify(false);
            } else setNotify(await enableNotifications());
          }}
        >
          {notify ? 'notifications on' : 'notify me'}
        </button>
        <button type="button" class="link" onClick={() => setHelp(true)}>
          ? help
        </button>
      </div>
      {error ? <div class="error">{error}</div> : null}
      {items === null ? <div class="muted">loading…</div> : null}
      {items !== null && items.length === 0 ? (
        <div class="empty" data-testid="empty">
          Nothing waits for you.
        </div>
      ) : null}
      {KINDS.map((k) => {
        const group = ordered.filter((e) => e.kind === k.kind);
        const total = items?.filter((e) => e.kind === k.kind).length ?? 0;
        if (total === 0) return null;
        return (
          <section class="group" key={k.kind} data-testid={`group-${k.kind}`}>
            <h2>
              {k.label} <span class="count">{total}</span>
            </h2>
            {group.map((e) => (
              <Card
                key={keyOf(e)}
                entry={e}
                selected={current !== undefined && keyOf(current) === keyOf(e)}
                command={command?.target === keyOf(e) ? command : undefined}
                onDecided={() => decided(e)}
                onDeciding={() => deciding(e)}
                onSelect={() => select(ordered.indexOf(e))}
              />
            ))}
            {total > group.length ? (
              <button type="button" class="link" onClick={() => setShown({ ...shown, [k.kind]: group.length + GROUP_PAGE * 4 })}>
                show {Math.min(total - group.length, GROUP_PAGE * 4)} more
              </button>
            ) : null}
          </section>
        );
      })}
      {help ? <Help onClose={() => setHelp(false)} /> : null}
    </main>
  );
}
