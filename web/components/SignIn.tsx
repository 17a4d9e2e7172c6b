/** What someone who is not signed in sees: a link to sign in. */
export function SignIn(props: { reason?: string }) {
  return (
    <main class="signin" data-testid="signin">
      <h1>Agent Inbox</h1>
      <p>{props.reason ?? 'Sign in to see the decisions waiting for you.'}</p>
      <a class="button primary" href="/login">
        Sign in
      </a>
    </main>
  );
}
