/** Small formatters the cards share. */

/** "42s", "5m", "3h 10m", "2d 4h". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** Dollars with cents (or tenths of a cent below a dollar). */
export function usd(n: number): string {
  return n < 1 ? `$${n.toFixed(3)}` : `$${n.toFixed(2)}`;
}

/** The last `n` lines of a text. */
export function lastLines(text: string, n: number): string {
  const lines = text.replace(/\s+$/, '').split('\n');
  return lines.slice(-n).join('\n');
}

/** A string field of an item's detail, or null. */
export function str(detail: Record<string, unknown> | undefined, key: string): string | null {
  const v = detail?.[key];
  return typeof v === 'string' && v.length > 0 ? v : typeof v === 'number' ? String(v) : null;
}

/** `v` when it is an http(s) URL, else null: a link never gets a `javascript:` or `data:` address from the wire. */
export function httpUrl(v: unknown): string | null {
  return typeof v === 'string' && /^https?:\/\//i.test(v) ? v : null;
}
