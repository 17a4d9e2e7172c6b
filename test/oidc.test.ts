/**
 * OpenID Connect: people sign in at a real provider (oidc-provider on loopback) with the authorization code flow
 * and PKCE, and get the role and teams TEAMS_FILE and the configured claims give them; a tampered, foreign,
 * replayed or refused callback starts no session; programs send the provider's JWT access tokens, and an
 * expired, foreign, wrongly addressed or unsigned JWT is a 401. One provider and one backend for the file.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { identityFromClaims, UnusableClaimsError, type AccessConfig } from '../domain/access';
import { OIDC_FLOW_COOKIE } from '../api/auth/oidc';
import { SESSION_COOKIE } from '../api/auth/session';
import { ApiTokenStore } from '../api/auth/tokens';
import { ConfigError, loadConfig } from '../workers/config';
import { createLogger } from '../workers/log';
import { startStack, type Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { launchBrowser } from './support/browser';
import { authorize, call, freePort } from './support/http';
import { CookieJar, OTHER_RESOURCE, PROVIDER_KID, startTestProvider, type TestProvider } from './support/oidc-provider';
import { stackEnv, startTestStack, startTestTemporal } from './support/stack';
import { taskApi } from './support/task-api';

/** The audience JWTs for this API carry (OIDC_AUDIENCE). */
const AUDIENCE = 'urn:agent-inbox';
const TEAMS_YAML = `teams:
  red: {}
people:
  alice: { role: approver, teams: [red] }
  ci-bot: { role: submitter, teams: [red] }
  dora@example.com: { role: approver, teams: [blue] }
groups:
  blue-approvers: { role: approver, teams: [blue] }
`;
/** Accounts at the provider and the claims each has. */
const ACCOUNTS: Record<string, Record<string, unknown>> = {
  alice: { name: 'Alice', email: 'alice@example.com', email_verified: true },
  bob: { name: 'Bob', groups: ['blue-approvers', 'no-such-group'] },
  carol: { name: 'Carol', agent_inbox_role: 'submitter', agent_inbox_teams: ['green'] },
  dora: { name: 'Dora', email: 'Dora@Example.com', email_verified: true },
  // Everything a person could type into their own profile, and claims nobody configured.
  mallory: { name: 'admin', preferred_username: 'admin', email: 'dora@example.com', email_verified: false, role: 'admin' },
};

let temporal: DevServer;
let provider: TestProvider;
let stack: Stack;
let base: string;
let origin: string;
let submitterToken: string;
const opened: string[] = [];
const api = taskApi(() => base);

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('oidc');
  origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  provider = await startTestProvider({ redirectUri: `${publicUrl}/login/callback`, apiAudience: AUDIENCE, accounts: ACCOUNTS });
  const teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(teamsFile, TEAMS_YAML);
  const secretFile = path.join(root, 'oidc-client-secret');
  fs.writeFileSync(secretFile, `${provider.web.clientSecret}\n`, { mode: 0o600 });
  const dataDir = path.join(root, 'data');
  stack = await startTestStack(temporal, dataDir, `oidc-${process.pid}`, {
    PORT: String(port),
    PUBLIC_URL: publicUrl,
    API_AUTH: 'oidc',
    OIDC_ISSUER: provider.issuer,
    OIDC_CLIENT_ID: provider.web.clientId,
    OIDC_CLIENT_SECRET_FILE: secretFile,
    OIDC_AUDIENCE: AUDIENCE,
    OIDC_ROLE_CLAIM: 'agent_inbox_role',
    OIDC_TEAMS_CLAIM: 'agent_inbox_teams',
    TEAMS_FILE: teamsFile,
    SANDBOX_DRIVER: 'process',
  });
  base = stack.url!;
  submitterToken = new ApiTokenStore(dataDir).create({ name: 'submitter-red', role: 'submitter', teams: ['red'] }).token;
  authorize(base, submitterToken);
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await stack?.stop();
  await provider?.stop();
  await temporal?.stop();
});

/** Goes from `/login/oidc` through the provider as `who` (or refusing, with `deny`) to the callback URL, which it returns unopened. */
function toCallback(jar: CookieJar, who: string, opts: { deny?: boolean } = {}): Promise<URL> {
  return jar.followUntil(`${base}/login/oidc`, `${base}/login/callback`, (location) => {
    if (location.pathname.startsWith('/interaction/')) location.searchParams.set(opts.deny ? 'deny' : 'login', opts.deny ? '1' : who);
    return location;
  });
}

/** Signs `who` in through the provider: the browser's jar, and what `/v1/me` says of them. */
async function signIn(who: string): Promise<{ jar: CookieJar; me: any }> {
  const jar = new CookieJar();
  const callback = await jar.fetch(await toCallback(jar, who));
  assert.equal(callback.status, 303, await callback.text());
  assert.equal(callback.headers.get('location'), '/');
  assert.ok(jar.cookies.has(SESSION_COOKIE), 'the callback started a session');
  assert.ok(!jar.cookies.has(OIDC_FLOW_COOKIE), 'the flow cookie is gone');
  return { jar, me: await meOf(jar) };
}

/** `GET /v1/me` with the jar's cookies and no bearer token. */
async function meOf(jar: CookieJar): Promise<any> {
  const res = await jar.fetch(`${base}/v1/me`);
  return { status: res.status, ...((await res.json()) as object) };
}

/** `GET /v1/me` with `Authorization: Bearer <token>`. */
function meWith(token: string) {
  return call(base, 'GET', '/v1/me', undefined, { authorization: `Bearer ${token}` });
}

describe('people sign in at the identity provider', () => {
  it('offers the provider on the sign-in screen, and no local admin token or login link', async () => {
    const options = await call(base, 'GET', '/login/options', undefined, { authorization: '' });
    assert.deepEqual(options.body, { idp: { name: new URL(provider.issuer).host, url: '/login/oidc' }, local: false });
    const login = await fetch(`${base}/login`, { redirect: 'manual' });
    assert.equal(login.status, 303);
    assert.equal(login.headers.get('location'), '/login/oidc');
    assert.equal(stack.auth.adminToken, null);
    assert.equal(stack.auth.loginLink(), null);
    assert.equal((await fetch(`${base}/login/local?code=x`, { redirect: 'manual' })).status, 404);
  });

  it('starts the flow with PKCE (S256), state and nonce in a short-lived httpOnly, SameSite=Lax cookie', async () => {
    const res = await fetch(`${base}/login/oidc`, { redirect: 'manual' });
    assert.equal(res.status, 303);
    const to = new URL(res.headers.get('location')!);
    assert.equal(to.origin, provider.issuer);
    assert.equal(to.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(to.searchParams.get('code_challenge'));
    assert.ok(to.searchParams.get('state'));
    assert.ok(to.searchParams.get('nonce'));
    assert.equal(to.searchParams.get('redirect_uri'), `${base}/login/callback`);
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith(`${OIDC_FLOW_COOKIE}=`))!;
    assert.match(cookie, /HttpOnly/i);
    assert.match(cookie, /SameSite=Lax/i);
    assert.match(cookie, /Max-Age=600/i);
  });

  it('maps a person to the role and teams TEAMS_FILE and the configured claims give them; /v1/me says idp', async () => {
    const alice = (await signIn('alice')).me;
    assert.equal(alice.status, 200, JSON.stringify(alice));
    assert.equal(alice.subject, 'alice');
    assert.equal(alice.name, 'Alice');
    assert.equal(alice.role, 'approver');
    assert.deepEqual(alice.teams, ['red']);
    assert.equal(alice.via.kind, 'session');
    assert.equal(alice.idp, true);
    assert.equal(typeof alice.csrf_token, 'string');
    const bob = (await signIn('bob')).me;
    assert.deepEqual([bob.role, bob.teams], ['approver', ['blue']], 'from the groups claim; an unknown group gives nothing');
    const carol = (await signIn('carol')).me;
    assert.deepEqual([carol.role, carol.teams], ['submitter', ['green']], 'from the configured claims; a team needs no settings');
    const dora = (await signIn('dora')).me;
    assert.deepEqual([dora.role, dora.teams], ['approver', ['blue']], 'by the email the provider verified');
  });

  it('lets an unmapped person see nothing, whatever their profile says', async () => {
    const id = await submitRisky();
    const { jar, me } = await signIn('mallory');
    assert.deepEqual([me.subject, me.role, me.teams], ['mallory', 'viewer', []]);
    const tasks = await jar.fetch(`${base}/v1/tasks`);
    assert.equal(tasks.status, 200);
    assert.deepEqual(((await tasks.json()) as any).tasks, []);
    const inbox = await jar.fetch(`${base}/v1/inbox`);
    assert.deepEqual(((await inbox.json()) as any).items ?? [], []);
    assert.equal((await jar.fetch(`${base}/v1/tasks/${id}`)).status, 403);
    const submit = await jar.fetch(`${base}/v1/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf_token },
      body: JSON.stringify({ repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }),
    });
    assert.equal(submit.status, 403);
  });

  it('records a decision made in the session with the session and the person as its actor', async () => {
    const id = await submitRisky();
    const item = await api.nextItem(id, ['risky_action']);
    const { jar, me } = await signIn('alice');
    const res = await jar.fetch(`${base}/v1/tasks/${id}/inbox/${item.item_id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf_token },
      body: JSON.stringify({ action: 'approve', actor: 'someone-else' }),
    });
    const body = (await res.json()) as any;
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.item.resolution.by.subject, 'alice');
    assert.equal(body.item.resolution.by.via, `session:${me.via.id}`);
    const decision = (await api.trace(id)).find((e) => e.type === 'decision');
    assert.equal(decision.data.by.subject, 'alice');
    assert.match(decision.data.by.via, /^session:/);
  });

  it('refuses a callback with a tampered or missing state, from another browser or provider, replayed, or refused by the provider', async () => {
    const refused = async (jar: CookieJar, url: URL, why: RegExp): Promise<void> => {
      const res = await jar.fetch(url);
      const body = (await res.json()) as any;
      assert.equal(res.status, 401, JSON.stringify(body));
      assert.equal(body.error.code, 'login_refused');
      assert.match(body.error.message, why);
      assert.ok(!jar.cookies.has(SESSION_COOKIE), 'no session');
      assert.equal((await meOf(jar)).status, 401);
    };
    const tamperedJar = new CookieJar();
    const tampered = await toCallback(tamperedJar, 'alice');
    tampered.searchParams.set('state', `${tampered.searchParams.get('state')}x`);
    await refused(tamperedJar, tampered, /state/);

    const missingJar = new CookieJar();
    const missing = await toCallback(missingJar, 'alice');
    missing.searchParams.delete('state');
    await refused(missingJar, missing, /state/);

    // A code (with its state) sent to a browser that never started this sign-in: login CSRF.
    const victim = new CookieJar();
    await refused(victim, await toCallback(new CookieJar(), 'mallory'), /did not start here/);

    const replayJar = new CookieJar();
    const once = await toCallback(replayJar, 'alice');
    const flowCookie = replayJar.cookies.get(OIDC_FLOW_COOKIE)!;
    assert.equal((await replayJar.fetch(once)).status, 303);
    const replayer = new CookieJar();
    replayer.cookies.set(OIDC_FLOW_COOKIE, flowCookie);
    await refused(replayer, once, /completed already/);

    // A code from another provider that knows the same client: the response names the wrong issuer.
    const elsewhere = await startTestProvider({ redirectUri: `${base}/login/callback`, apiAudience: AUDIENCE, accounts: ACCOUNTS });
    try {
      const foreignJar = new CookieJar();
      const start = await foreignJar.fetch(`${base}/login/oidc`);
      const atOther = new URL(start.headers.get('location')!.replace(provider.issuer, elsewhere.issuer));
      const foreign = await foreignJar.followUntil(atOther.href, `${base}/login/callback`, (l) => {
        if (l.pathname.startsWith('/interaction/')) l.searchParams.set('login', 'alice');
        return l;
      });
      assert.equal(foreign.searchParams.get('iss'), elsewhere.issuer);
      await refused(foreignJar, foreign, /"iss"/);
    } finally {
      await elsewhere.stop();
    }

    const denyJar = new CookieJar();
    await refused(denyJar, await toCallback(denyJar, 'alice', { deny: true }), /access_denied/);
  });

  it('signs a person in from the web app\'s sign-in screen in a real browser', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${base}/`);
      await page.getByRole('link', { name: `Sign in with ${new URL(provider.issuer).host}` }).click();
      await page.getByLabel('account').fill('alice');
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForSelector('[data-testid=me]');
      assert.equal(new URL(page.url()).origin, base);
      assert.match((await page.textContent('[data-testid=me]')) ?? '', /Alice · approver/);
    } finally {
      await browser.close();
    }
  });

  it('ends the local session on logout', async () => {
    const { jar, me } = await signIn('alice');
    const out = await jar.fetch(`${base}/v1/logout`, { method: 'POST', headers: { 'x-csrf-token': me.csrf_token } });
    assert.equal(out.status, 204);
    assert.equal((await meOf(jar)).status, 401);
  });
});

describe('programs send the provider JWTs', () => {
  /** A JWT signed with `key` (default: the provider's own) with `claims` over a valid set for this API. */
  const forge = (claims: JWTPayload = {}, opts: { key?: CryptoKey; alg?: string } = {}) =>
    new SignJWT({ sub: 'ci-bot', client_id: 'ci-bot', jti: `forged-${Math.random()}`, ...claims })
      .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: PROVIDER_KID, typ: 'at+jwt' })
      .setIssuer(typeof claims.iss === 'string' ? claims.iss : provider.issuer)
      .setAudience(claims.aud ?? AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(typeof claims.exp === 'number' ? claims.exp : '5m')
      .sign(opts.key ?? provider.signingKey);

  it('accepts an access token from the token endpoint as the program TEAMS_FILE names, beside API tokens', async () => {
    const token = await provider.programToken();
    const me = await meWith(token);
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.equal(me.body.subject, 'ci-bot');
    assert.equal(me.body.role, 'submitter');
    assert.deepEqual(me.body.teams, ['red']);
    assert.deepEqual(me.body.via, { kind: 'jwt', id: decodeJwt(token).jti });
    assert.equal(me.body.csrf_token, null);
    assert.equal((await call(base, 'GET', '/v1/tasks', undefined, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await meWith(submitterToken)).body.via.kind, 'api_token');
    assert.equal((await meWith(await forge())).status, 200, 'a token signed with the provider key for this API verifies');
    const unnamed = await meWith(await forge({ jti: undefined }));
    assert.match(unnamed.body.via.id, /^[0-9a-f]{16}$/, 'a token without jti is named by its hash');
  });

  it('refuses an expired, unexpiring, foreign-issuer, wrong-audience, foreign-key, HS256 or unsigned JWT', async () => {
    const now = Math.floor(Date.now() / 1000);
    const other = await generateKeyPair('RS256');
    const payload = Buffer.from(JSON.stringify({ sub: 'ci-bot', iss: provider.issuer, aud: AUDIENCE, exp: now + 300 })).toString('base64url');
    const cases: [string, string, RegExp][] = [
      ['expired', await forge({ exp: now - 120 }), /expired/],
      ['another issuer', await forge({ iss: 'http://127.0.0.1:9' }), /iss/],
      ['another audience from the provider', await provider.programToken(OTHER_RESOURCE), /aud/],
      ['another audience', await forge({ aud: 'urn:someone-else' }), /aud/],
      ['another key', await forge({}, { key: other.privateKey }), /not signed/],
      ['HS256 with the client secret', await new SignJWT({ sub: 'ci-bot' }).setProtectedHeader({ alg: 'HS256', kid: PROVIDER_KID }).setIssuer(provider.issuer).setAudience(AUDIENCE).setExpirationTime('5m').sign(new TextEncoder().encode(provider.web.clientSecret)), /algorithm/],
      ['alg none', `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`, /algorithm/],
      ['no expiry', await new SignJWT({ sub: 'ci-bot' }).setProtectedHeader({ alg: 'RS256', kid: PROVIDER_KID }).setIssuer(provider.issuer).setAudience(AUDIENCE).sign(provider.signingKey), /exp claim is missing/],
      ['posing as the local admin', await forge({ sub: 'local-admin' }), /reserves/],
    ];
    for (const [what, token, why] of cases) {
      const res = await meWith(token);
      assert.equal(res.status, 401, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'unauthenticated', what);
      assert.match(res.body.error.message, why, what);
    }
  });
});

describe('configuration', () => {
  const env = (extra: Record<string, string | undefined>) => {
    const dir = tempDir('oidc-config');
    const all: Record<string, string | undefined> = {
      ...stackEnv(temporal, path.join(dir, 'data'), 'unused'),
      API_AUTH: 'oidc',
      OIDC_ISSUER: 'https://idp.example.com/realms/x',
      OIDC_CLIENT_ID: 'inbox',
      OIDC_CLIENT_SECRET: 's3cret',
      PUBLIC_URL: 'https://inbox.example.com/',
      ...extra,
    };
    return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as NodeJS.ProcessEnv;
  };
  const refuses = (extra: Record<string, string | undefined>, variable: RegExp) =>
    assert.throws(() => loadConfig(env(extra)), (err: unknown) => err instanceof ConfigError && variable.test(err.message), JSON.stringify(extra));

  it('refuses to start without the issuer, client, secret or PUBLIC_URL, naming the variable', () => {
    refuses({ OIDC_ISSUER: undefined }, /OIDC_ISSUER/);
    refuses({ PUBLIC_URL: undefined }, /PUBLIC_URL/);
    refuses({ OIDC_CLIENT_ID: undefined }, /OIDC_CLIENT_ID/);
    refuses({ OIDC_CLIENT_SECRET: undefined }, /OIDC_CLIENT_SECRET/);
    refuses({ OIDC_ISSUER: 'http://idp.example.com' }, /OIDC_ISSUER: must be an https URL/);
    refuses({ PUBLIC_URL: 'http://inbox.example.com' }, /PUBLIC_URL: must be an https URL/);
    refuses({ OIDC_SCOPES: 'profile email' }, /OIDC_SCOPES/);
    refuses({ OIDC_ROLE_CLAIM: 'name' }, /OIDC_ROLE_CLAIM/);
    refuses({ OIDC_GROUPS_CLAIM: 'email' }, /OIDC_GROUPS_CLAIM/);
    const open = path.join(tempDir('oidc-secret'), 'secret');
    fs.writeFileSync(open, 'shared-secret\n', { mode: 0o644 });
    fs.chmodSync(open, 0o644);
    refuses({ OIDC_CLIENT_SECRET: undefined, OIDC_CLIENT_SECRET_FILE: open }, /OIDC_CLIENT_SECRET_FILE: .*readable by every user/);
  });

  it('refuses to start when the issuer has no discovery document there, naming OIDC_ISSUER', async () => {
    const cfg = loadConfig(env({ OIDC_ISSUER: `${provider.issuer}/not-an-issuer`, PUBLIC_URL: base, ROLES: 'api' }));
    await assert.rejects(startStack(cfg, createLogger({ level: 'error', component: 'test' })), (err: unknown) => err instanceof ConfigError && /OIDC_ISSUER: cannot use/.test(err.message));
  });

  it('derives the redirect URI and the JWT audience, and keeps the secret out of the plain variables', () => {
    const cfg = loadConfig(env({}));
    assert.equal(cfg.oidc?.redirectUri, 'https://inbox.example.com/login/callback');
    assert.equal(cfg.oidc?.audience, 'inbox');
    assert.deepEqual(cfg.oidc?.scopes, ['openid', 'profile', 'email']);
    assert.deepEqual(cfg.oidc?.claims, { groups: 'groups' }, 'role and teams claims are read only when named');
    assert.equal(cfg.oidc?.clientSecret, 's3cret');
    assert.equal(cfg.OIDC_CLIENT_SECRET, undefined);
    assert.equal(loadConfig(env({ API_AUTH: 'tokens' })).oidc, null);
    assert.equal(loadConfig(env({ ROLES: 'worker', OIDC_CLIENT_SECRET: undefined, PUBLIC_URL: undefined })).oidc, null, 'a worker needs none of it');
  });
});

describe('identityFromClaims', () => {
  const config: Pick<AccessConfig, 'people' | 'groups'> = {
    people: { p1: { role: 'submitter', teams: ['red'] }, 'x@example.com': { role: 'admin', teams: [] } },
    groups: { ops: { role: 'approver', teams: ['blue'] } },
  };
  const via = { kind: 'session' as const, id: 'idp' };
  const names = { role: 'agent_inbox_role', teams: 'agent_inbox_teams', groups: 'groups' };

  it('gives the highest role and every team of the person, their groups and the configured claims', () => {
    const id = identityFromClaims({ sub: 'p1', groups: 'ops other', agent_inbox_role: 'viewer', agent_inbox_teams: 'green red' }, config, { names, via });
    assert.deepEqual([id.role, id.teams], ['approver', ['blue', 'green', 'red']]);
  });

  it('defaults to a viewer in no team, and never trusts an unverified email, a bad role or an unnamed claim', () => {
    const id = identityFromClaims({ sub: 'p2', email: 'X@example.com', email_verified: 'true', agent_inbox_role: 'root', role: 'admin', agent_inbox_teams: ['../etc', 7] }, config, { names, via });
    assert.deepEqual([id.role, id.teams], ['viewer', []]);
    assert.equal(identityFromClaims({ sub: 'p3', email: 'X@example.com', email_verified: true }, config, { names, via }).role, 'admin');
    assert.equal(identityFromClaims({ sub: 'p4', agent_inbox_role: 'admin' }, config, { names: {}, via }).role, 'viewer');
  });

  it('refuses claims without a sub, a sub posing as our own credentials, and a self-editable claim name', () => {
    for (const claims of [{}, { sub: '' }, { sub: 'local-admin' }, { sub: 'token:0123456789abcdef' }]) {
      assert.throws(() => identityFromClaims(claims, config, { names, via }), UnusableClaimsError, JSON.stringify(claims));
    }
    assert.throws(() => identityFromClaims({ sub: 'p1', name: 'admin' }, config, { names: { role: 'name' }, via }), UnusableClaimsError);
  });
});

/** Submits a task of team red (as the red submitter's API token) that stops on a risky command. */
async function submitRisky(): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', {
    repo: origin,
    goal: 'Touch a file',
    planner: { kind: 'recipe', steps: [{ run: 'echo risky >> a.txt' }] },
    policy: { approval_commands: ['^echo risky'] },
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  opened.push(res.body.task_id);
  return res.body.task_id;
}
