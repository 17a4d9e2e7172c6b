/** The sign-in screen: `GET /login/options` says whether the backend signs people in at an identity provider. */
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import type { SignInOptions } from '../types';

/** What someone who is not signed in sees: a link to sign in, "Sign in with <provider>" when the backend has one. */
export function SignIn(props: { reason?: string }) {
  const [options, setOptions] = useState<SignInOptions | null>(null);
  useEffect(() => {
    api<SignInOptions>('GET', '/login/options').then(setOptions, () => setOptions(null));
  }, []);
  const idp = options?.idp ?? null;
  return (
    <main class="signin" data-testid="signin">
      <h1>Agent Inbox</h1>
      <p>{props.reason ?? 'Sign in to see the decisions waiting for you.'}</p>
      <a class="button primary" href={idp ? idp.url : '/login'}>
        {idp ? `Sign in with ${idp.name}` : 'Sign in'}
      </a>
    </main>
  );
}
