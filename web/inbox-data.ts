/**
 * Reading the inbox: `GET /v1/inbox` with the filters the server knows, the rest applied here, so a
 * filter the backend does not support yet still narrows the list.
 */
import { api, ApiError } from './api';
import type { InboxEntry } from './types';

/** The filters a page URL names (`/?kind=risky_action&repo=…`), so a filtered view can be linked. */
export function filterFromUrl(search: string): InboxFilter {
  const p = new URLSearchParams(search);
  const f: InboxFilter = {};
  for (const k of ['kind', 'repo', 'requester', 'team', 'label', 'older_than_minutes'] as const) {
    const v = p.get(k);
    if (v) f[k] = v;
  }
  return f;
}

/** The inbox's filters, as strings from the form. */
export interface InboxFilter {
  kind?: string;
  repo?: string;
  requester?: string;
  team?: string;
  label?: string;
  older_than_minutes?: string;
}

/** Items one page load asks for. */
const LIMIT = 1000;

const SERVER_KNOWN = ['kind', 'repo', 'requester'] as const;

/** Whether the backend accepted team/label/age filters last time (they arrive with access control). */
let extendedFilters = true;

function query(f: InboxFilter, keys: readonly (keyof InboxFilter)[]): string {
  const p = new URLSearchParams({ limit: String(LIMIT) });
  for (const k of keys) if (f[k]) p.set(k, f[k]!);
  return p.toString();
}

/** Pending items, ordered as the server orders them (priority, then waiting time), filtered by `f`. */
export async function loadInbox(f: InboxFilter): Promise<InboxEntry[]> {
  const all = Object.keys(f) as (keyof InboxFilter)[];
  let items: InboxEntry[];
  try {
    items = (await api<{ items: InboxEntry[] }>('GET', `/v1/inbox?${query(f, extendedFilters ? all : SERVER_KNOWN)}`)).items;
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 400 && extendedFilters && all.some((k) => !SERVER_KNOWN.includes(k as never)))) throw err;
    extendedFilters = false;
    items = (await api<{ items: InboxEntry[] }>('GET', `/v1/inbox?${query(f, SERVER_KNOWN)}`)).items;
  }
  return items.filter((e) => matches(e, f));
}

/** The filters applied in the browser too (the server may have applied them already). */
function matches(e: InboxEntry, f: InboxFilter): boolean {
  if (f.team && e.team !== undefined && e.team !== f.team) return false;
  if (f.label && e.labels !== undefined && !e.labels.includes(f.label)) return false;
  if (f.older_than_minutes && e.waiting_seconds < Number(f.older_than_minutes) * 60) return false;
  return true;
}
