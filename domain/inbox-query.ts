/**
 * The web inbox's first read of `GET /v1/inbox`, as one URL both sides build: the page's script asks for it,
 * and the server names it in `index.html` as a preload, so the browser starts it before the script runs.
 */

/** The filters a page URL may name (`/?kind=risky_action&repo=…`), in the order the query lists them. */
export const PAGE_FILTER_KEYS = ['kind', 'repo', 'requester', 'team', 'label', 'older_than_minutes'] as const;

/** The inbox's filters as a page URL names them. */
export type PageFilter = Partial<Record<(typeof PAGE_FILTER_KEYS)[number], string>>;

/**
 * Items the first read of a page load asks for: a tall screen's first cards (a 1280×800 window shows five),
 * and cheap for the server, whose cost grows with the rows it lists (100 rows: ~60 ms alone, 20: ~26 ms).
 */
export const FIRST_PAGE_LIMIT = 20;

/** The filters of a page URL's query string (`location.search`, or the server's copy of it). */
export function pageFilterOf(search: string | URLSearchParams): PageFilter {
  const p = typeof search === 'string' ? new URLSearchParams(search) : search;
  const f: PageFilter = {};
  for (const k of PAGE_FILTER_KEYS) {
    const v = p.get(k);
    if (v) f[k] = v;
  }
  return f;
}

/** `limit=…` and the named filters, in a fixed order: the same filter always gives the same URL. */
export function inboxQueryString(f: PageFilter, keys: readonly (keyof PageFilter)[], limit: number): string {
  const p = new URLSearchParams({ limit: String(limit) });
  for (const k of PAGE_FILTER_KEYS) if (keys.includes(k) && f[k]) p.set(k, f[k]!);
  return p.toString();
}
