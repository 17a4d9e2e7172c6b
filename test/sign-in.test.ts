/**
 * Signing in to the web inbox without an identity provider: the one-time login link and the admin token form
 * start a cookie session; the cookie is httpOnly and SameSite; state-changing cookie requests need the CSRF
 * token and our own origin; a forged or signed-out cookie is refused. API role only: no task runs.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SESSION_COOKIE } from '../api/auth/session';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { call } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
let dataDir: string;
const NONE = { authorization: '' };

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('sign-in');
  origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
  dataDir = path.join(root, 'data');
  stack = await startTestStack(temporal, dataDir, `sign-in-${process.pid}`, { ROLES: 'api' });
  base = stack.url!;
});

after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

/** Follows a login link by hand: the session cookie it sets, and the raw Set-Cookie header. */
async function openLink(link: string): Promise<{ status: number; cookie: string | null; setCookie: string; location: string | null }> {
  const res = await fetch(link, { redirect: 'manual' });
  const setCookie = res.headers.get('set-cookie') ?? '';
  const m = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(setCookie);
  return { status: res.status, cookie: m ? `${SESSION_COOKIE}=${m[1]}` : null, setCookie, location: res.headers.get('location') };
}

/** A valid task body; with ROLES=api it is only queued. */
const task = () => ({ repo: origin, goal: 'sign-in test', planner: { kind: 'recipe', steps: [{ run: 'true' }] } });

describe('sign-in without an identity provider', () => {
  it('a login link starts an httpOnly, SameSite session once, and /v1/me names the local admin with a CSRF token', async () => {
    const link = stack.auth.loginLink()!;
    const first = await openLink(link);
    assert.equal(first.status, 303);
    assert.equal(first.location, '/');
    assert.ok(first.cookie, first.setCookie);
    assert.match(first.setCookie, /HttpOnly/i);
    assert.match(first.setCookie, /SameSite=Lax/i);
    const me = await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: first.cookie! });
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.equal(me.body.subject, 'local-admin');
    assert.equal(me.body.role, 'admin');
    assert.equal(me.body.via.kind, 'session');
    assert.equal(typeof me.body.csrf_token, 'string');
    // The same link again, and a made-up one, sign nobody in.
    assert.equal((await openLink(link)).status, 401);
    assert.equal((await openLink(`${base}/login/local?code=made-up`)).status, 401);
  });

  it('a cookie request that changes state needs the CSRF token and our own origin', async () => {
    const { cookie } = await openLink(stack.auth.loginLink()!);
    const me = await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: cookie! });
    const csrf = me.body.csrf_token as string;
    const bare = await call(base, 'POST', '/v1/tasks', task(), { ...NONE, cookie: cookie! });
    assert.equal(bare.status, 403, JSON.stringify(bare.body));
    assert.equal(bare.body.error.code, 'csrf_failed');
    const wrong = await call(base, 'POST', '/v1/tasks', task(), { ...NONE, cookie: cookie!, 'x-csrf-token': csrf.slice(0, -2) + 'AA' });
    assert.equal(wrong.body.error?.code, 'csrf_failed');
    const elsewhere = await call(base, 'POST', '/v1/tasks', task(), { ...NONE, cookie: cookie!, 'x-csrf-token': csrf, origin: 'http://evil.example' });
    assert.equal(elsewhere.body.error?.code, 'csrf_failed');
    const ok = await call(base, 'POST', '/v1/tasks', task(), { ...NONE, cookie: cookie!, 'x-csrf-token': csrf, origin: new URL(base).origin });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    // A bearer request needs no CSRF token: a browser never adds one on its own.
    const bearer = await call(base, 'POST', '/v1/tasks', task(), { authorization: `Bearer ${stack.auth.adminToken}` });
    assert.equal(bearer.status, 202, JSON.stringify(bearer.body));
    // Another session's token does not fit this one.
    const other = await openLink(stack.auth.loginLink()!);
    const otherCsrf = (await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: other.cookie! })).body.csrf_token;
    assert.equal((await call(base, 'POST', '/v1/tasks', task(), { ...NONE, cookie: cookie!, 'x-csrf-token': otherCsrf })).body.error?.code, 'csrf_failed');
  });

  it('refuses a forged cookie and one that signed out', async () => {
    const { cookie } = await openLink(stack.auth.loginLink()!);
    const [name, value] = cookie!.split('=') as [string, string];
    const [body, mac] = value.split('.') as [string, string];
    const payload = JSON.parse(Buffer.from(body, 'base64url').toString());
    payload.identity.subject = 'someone-else';
    const forged = `${name}=${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${mac}`;
    assert.equal((await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: forged })).status, 401);
    assert.equal((await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: `${name}=garbage` })).status, 401);

    const csrf = (await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: cookie! })).body.csrf_token;
    assert.equal((await call(base, 'POST', '/v1/logout', undefined, { ...NONE, cookie: cookie! })).body.error?.code, 'csrf_failed', 'signing out needs the token too');
    assert.equal((await call(base, 'POST', '/v1/logout', undefined, { ...NONE, cookie: cookie!, 'x-csrf-token': csrf })).status, 204);
    assert.equal((await call(base, 'GET', '/v1/me', undefined, { ...NONE, cookie: cookie! })).status, 401);
    // Another API process on the same data directory (a restart, a second replica) refuses it too.
    const other = await startTestStack(temporal, dataDir, `sign-in-other-${process.pid}`, { ROLES: 'api' });
    try {
      assert.equal((await call(other.url!, 'GET', '/v1/me', undefined, { ...NONE, cookie: cookie! })).status, 401, 'a signed-out session stays signed out');
      const live = await openLink(stack.auth.loginLink()!);
      assert.equal((await call(other.url!, 'GET', '/v1/me', undefined, { ...NONE, cookie: live.cookie! })).status, 200, 'a live session reads there');
    } finally {
      await other.stop();
    }
  });

  it('signs in with the admin token pasted into the form, only from our own origin', async () => {
    const post = (token: string, extra: Record<string, string> = {}) =>
      fetch(`${base}/login/token`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra }, body: new URLSearchParams({ token }) });
    assert.equal((await post('aia_wrong')).status, 401);
    assert.equal((await post(stack.auth.adminToken!, { origin: 'http://evil.example' })).status, 403);
    const ok = await post(stack.auth.adminToken!, { origin: new URL(base).origin });
    assert.equal(ok.status, 303);
    assert.match(ok.headers.get('set-cookie') ?? '', new RegExp(`${SESSION_COOKIE}=`));
    const page = await fetch(`${base}/login`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'/);
  });
});
