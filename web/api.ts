/**
 * The one way the front end talks to the backend: same-origin JSON with the session cookie, the CSRF
 * header on every state-changing request, and typed errors a component can show.
 */

/** A refused or failed request, with the backend's `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;

/** Remembers the CSRF token `/v1/me` gave this session. */
export function setCsrfToken(token: string | null): void {
  csrf = token;
}

/** Calls the API; rejects with an {@link ApiError} on any non-2xx answer. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf !== null) headers['x-csrf-token'] = csrf;
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  if (!res.ok) {
    const err = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(res.status, err?.code ?? `http_${res.status}`, err?.message ?? res.statusText);
  }
  return parsed as T;
}

/** Reads a text artifact (a full log). */
export async function artifactText(taskId: string, name: string): Promise<string> {
  const res = await fetch(`/v1/tasks/${encodeURIComponent(taskId)}/artifacts/${encodeURIComponent(name)}`, { credentials: 'same-origin' });
  if (!res.ok) throw new ApiError(res.status, `http_${res.status}`, `artifact ${name}: ${res.statusText}`);
  return res.text();
}
