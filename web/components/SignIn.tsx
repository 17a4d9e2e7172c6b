/** What someone who is not signed in sees: a link to sign in, at the identity provider when the backend has one. */
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import type { SignInOptions } from '../types';

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
