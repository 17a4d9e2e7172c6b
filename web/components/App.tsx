/** The app shell: who is signed in (`/v1/me`; a 401 shows the sign-in screen), navigation and the page for the path. */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, setCsrfToken } from '../api';
import { navigate, usePath } from '../router';
import { MeContext } from '../role';
import type { Me } from '../types';
import { InboxPage } from './InboxPage';
import { SignIn } from './SignIn';
import { SubmitForm } from './SubmitForm';
import { TaskPage } from './TaskPage';

type Session = { state: 'loading' } | { state: 'in'; me: Me | null } | { state: 'out'; reason?: string };

let firstMe: Promise<Me> | null = null;

/** Starts `/v1/me` at once (with the inbox's first read), before the first render; the app's first session check uses it. */
export function prefetchMe(): void {
  firstMe = api<Me>('GET', '/v1/me');
  firstMe.catch(() => undefined);
}

/** The whole app. */
export function App() {
  const path = usePath();
  const [session, setSession] = useState<Session>({ state: 'loading' });
  useEffect(() => {
    const me = firstMe ?? api<Me>('GET', '/v1/me');
    firstMe = null;
    me.then(
      (me) => {
        setCsrfToken(me.csrf_token ?? null);
        setSession({ state: 'in', me });
      },
      (err: unknown) => {
        if (err instanceof ApiError && err.status === 401) setSession({ state: 'out' });
        // No /v1/me on this backend (no sign-in yet): the API is open, so go on without an identity.
        else if (err instanceof ApiError && err.status === 404) setSession({ state: 'in', me: null });
        else setSession({ state: 'out', reason: err instanceof Error ? err.message : String(err) });
      },
    );
  }, []);
  if (session.state === 'loading') return <div class="muted">…</div>;
  if (session.state === 'out') return <SignIn {...(session.reason ? { reason: session.reason } : {})} />;
  const me = session.me;
  const link = (to: string, label: string) => (
    <a
      href={to}
      class={path === to ? 'active' : ''}
      onClick={(e) => {
        e.preventDefault();
        navigate(to);
      }}
    >
      {label}
    </a>
  );
  const task = /^\/tasks\/([^/]+)$/.exec(path);
  return (
    <div class="app">
      <nav class="top">
        <strong>Agent Inbox</strong>
        {link('/', 'Inbox')}
        {link('/submit', 'New task')}
        <span class="spacer" />
        {me ? (
          <span class="me" data-testid="me">
            {me.name ?? me.subject}
            {me.role ? ` · ${me.role}` : ''}
          </span>
        ) : null}
        {me && me.via?.kind === 'session' ? (
          <form method="post" action="/v1/logout" class="inline" onSubmit={(e) => void logout(e)}>
            <button type="submit" class="link">
              sign out
            </button>
          </form>
        ) : null}
      </nav>
      <MeContext.Provider value={me}>
        {task ? <TaskPage taskId={decodeURIComponent(task[1]!)} /> : path === '/submit' ? <SubmitForm /> : <InboxPage />}
      </MeContext.Provider>
    </div>
  );
}

/** Signs out with the CSRF header (a plain form post could not send it). */
async function logout(e: Event): Promise<void> {
  e.preventDefault();
  await api('POST', '/v1/logout').catch(() => undefined);
  location.assign('/');
}
