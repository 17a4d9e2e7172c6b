/**
 * Reading the inbox: `GET /v1/inbox` with the filters the server knows, the rest applied here, so a
 * filter the backend does not support yet still narrows the list.
 */
import { FIRST_PAGE_LIMIT, inboxQueryString, pageFilterOf, type PageFilter } from '../domain/inbox-query';
import { api, ApiError } from './api';
import type { InboxEntry } from './types';

/** The filters a page URL names (`/?kind=risky_action&repo=…`), so a filtered view can be linked. */
export const filterFromUrl = (search: string): InboxFilter => pageFilterOf(search);

/** The inbox's filters, as strings from the form. */
export type InboxFilter = PageFilter;

/** Items a full read asks for (the API's most), and the first read of a page load (it paints the first cards sooner). */
export const FULL_LIMIT = 1000;
export const FIRST_LIMIT = FIRST_PAGE_LIMIT;

const SERVER_KNOWN = ['kind', 'repo', 'requester'] as const;

/** Whether the backend accepted team/label/age filters last time (they arrive with access control). */
let extendedFilters = true;

/** A page of the inbox: items in the server's order and whether more matched than were read. */
export interface InboxRead {
  items: InboxEntry[];
  more: boolean;
}

type Page = { items: InboxEntry[]; count: number };

let prefetched: { key: string; page: Promise<Page> } | null = null;

/** Starts the first read at once (in parallel with `/v1/me`); the first {@link loadInbox} with the same filter uses it. */
export function prefetchInbox(f: InboxFilter): void {
  const q = inboxQueryString(f, Object.keys(f) as (keyof InboxFilter)[], FIRST_LIMIT);
  const page = api<Page>('GET', `/v1/inbox?${q}`);
  page.catch(() => undefined);
  prefetched = { key: q, page };
}

/** Pending items, ordered as the server orders them (priority, then waiting time), filtered by `f`. */
export async function loadInbox(f: InboxFilter, limit = FULL_LIMIT): Promise<InboxRead> {
  const all = Object.keys(f) as (keyof InboxFilter)[];
  const read = (keys: readonly (keyof InboxFilter)[]): Promise<Page> => {
    const q = inboxQueryString(f, keys, limit);
    if (prefetched?.key === q) {
      const p = prefetched.page;
      prefetched = null;
      return p;
    }
    return api<Page>('GET', `/v1/inbox?${q}`);
  };
  let page: Page;
  try {
    page = await read(extendedFilters ? all : SERVER_KNOWN);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 400 && extendedFilters && all.some((k) => !SERVER_KNOWN.includes(k as never)))) throw err;
    extendedFilters = false;
    page = await read(SERVER_KNOWN);
  }
  return { items: page.items.filter((e) => matches(e, f)), more: page.count > page.items.length };
}

/** The filters applied in the browser too (the server may have applied them already). */
function matches(e: InboxEntry, f: InboxFilter): boolean {
  if (f.team && e.team !== undefined && e.team !== f.team) return false;
  if (f.label && e.labels !== undefined && !e.labels.includes(f.label)) return false;
  if (f.older_than_minutes && e.waiting_seconds < Number(f.older_than_minutes) * 60) return false;
  return true;
}
