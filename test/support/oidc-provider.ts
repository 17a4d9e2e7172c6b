/**
 * A real OpenID Connect provider (oidc-provider) on loopback for sign-in tests: one web client with a redirect
 * URI, one program client for the client credentials grant with JWT access tokens, accounts whose claims the test
 * chooses, and an interaction the test drives by URL (`?login=<account>` signs in, `?deny=1` refuses; without
 * either, a form asking for the account). Its signing
 * key is the test's own, so a test can also sign tokens the provider could have issued (expired, wrong issuer).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

/** The part of oidc-provider's API these tests use (the package ships no types). */
interface ProviderInstance {
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  interactionDetails(req: http.IncomingMessage, res: http.ServerResponse): Promise<{ params: Record<string, string> }>;
  interactionFinished(req: http.IncomingMessage, res: http.ServerResponse, result: object, options?: { mergeWithLastSubmission?: boolean }): Promise<void>;
  Grant: new (init: { accountId: string; clientId: string }) => { addOIDCScope(scope: string): void; save(): Promise<string> };
}
// oidc-provider is ESM-only; Node 20.19+ loads it with require().
const { default: Provider } = require('oidc-provider') as { default: new (issuer: string, config: object) => ProviderInstance };

/** The resource indicator a program asks the provider for to get a JWT for the API under test. */
export const API_RESOURCE = 'urn:agent-inbox:api';
/** Another API's resource indicator: its tokens carry another audience. */
export const OTHER_RESOURCE = 'urn:other:api';
/** The `kid` of the provider's signing key. */
export const PROVIDER_KID = 'test-provider-key';

/** A running test provider. */
export interface TestProvider {
  issuer: string;
  /** The provider's private signing key (RS256, `kid` {@link PROVIDER_KID}). */
  signingKey: CryptoKey;
  web: { clientId: string; clientSecret: string };
  program: { clientId: string; clientSecret: string };
  /** A JWT access token for `resource` from the provider's token endpoint (client credentials grant of the program client). */
  programToken(resource?: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts a provider whose web client redirects to `redirectUri` and whose access tokens for {@link API_RESOURCE}
 * carry `apiAudience`. `accounts` are the claims (besides `sub`) of each account id.
 */
export async function startTestProvider(opts: { redirectUri: string; apiAudience: string; accounts: Record<string, Record<string, unknown>> }): Promise<TestProvider> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(privateKey)), kid: PROVIDER_KID, alg: 'RS256', use: 'sig' };
  const web = { clientId: 'agent-inbox-web', clientSecret: 'web-secret-0123456789abcdef0123456789abcdef' };
  const program = { clientId: 'ci-bot', clientSecret: 'bot-secret-0123456789abcdef0123456789abcdef' };
  let handle: (req: http.IncomingMessage, res: http.ServerResponse) => void = (_req, res) => res.writeHead(503).end();
  const server = http.createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const provider = new Provider(issuer, {
    jwks: { keys: [jwk] },
    cookies: { keys: ['test-provider-cookie-key'] },
    // Fixed lifetimes (seconds), so the provider does not warn about its defaults; the API's tokens say their own.
    ttl: { AccessToken: 300, ClientCredentials: 300, Grant: 600, IdToken: 300, Interaction: 600, Session: 600, AuthorizationCode: 60 },
    clients: [
      { client_id: web.clientId, client_secret: web.clientSecret, redirect_uris: [opts.redirectUri], grant_types: ['authorization_code'], response_types: ['code'] },
      { client_id: program.clientId, client_secret: program.clientSecret, redirect_uris: [], grant_types: ['client_credentials'], response_types: [] },
    ],
    claims: { openid: ['sub'], profile: ['name', 'preferred_username', 'agent_inbox_role', 'agent_inbox_teams', 'groups', 'role'], email: ['email', 'email_verified'] },
    async findAccount(_ctx: unknown, sub: string) {
      const claims = opts.accounts[sub];
      if (!claims) return undefined;
      return { accountId: sub, claims: async () => ({ ...claims, sub }) };
    },
    interactions: { url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => ({
          scope: 'api',
          audience: resource === API_RESOURCE ? opts.apiAudience : 'another-api',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  const app = provider.callback();

  handle = (req, res) => {
    const url = new URL(req.url ?? '/', issuer);
    if (!url.pathname.startsWith('/interaction/')) return app(req, res);
    void (async () => {
      const details = await provider.interactionDetails(req, res);
      if (url.searchParams.get('deny') === '1') {
        await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the person said no' }, { mergeWithLastSubmission: false });
        return;
      }
      const accountId = url.searchParams.get('login');
      if (accountId === null) {
        // A browser gets a form that asks which account to sign in as and sends it back here as `?login=`.
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
          `<!doctype html><title>Test provider</title><form method="get" action="${url.pathname}"><input name="login" aria-label="account"><button type="submit">Continue</button></form>`,
        );
        return;
      }
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id! });
      grant.addOIDCScope(details.params.scope ?? 'openid');
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
    })().catch((err: unknown) => res.writeHead(500).end(String(err)));
  };

  return {
    issuer,
    signingKey: privateKey,
    web,
    program,
    async programToken(resource = API_RESOURCE): Promise<string> {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${program.clientId}:${program.clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'api' }),
      });
      const body = (await res.json()) as { access_token?: string };
      if (!res.ok || typeof body.access_token !== 'string') throw new Error(`the provider issued no token: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * A tiny cookie jar over `fetch` for one browser: cookies by name (as a browser, it ignores the port, so the
 * provider's and the API's share it), redirects not followed so a test sees and may change every step.
 */
export class CookieJar {
  readonly cookies = new Map<string, string>();

  /** Sends `url` with the jar's cookies and keeps what the answer sets or clears. */
  async fetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const gone = value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) || (/^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]!) <= Date.now()));
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  /** Follows redirects from `url` until one leads to a URL starting with `stopAt` (returned, not fetched); `step` may change each location. */
  async followUntil(url: string, stopAt: string, step: (location: URL) => URL = (l) => l): Promise<URL> {
    let next = new URL(url);
    for (let hops = 0; hops < 10; hops++) {
      const res = await this.fetch(next);
      const location = res.headers.get('location');
      if (location === null) throw new Error(`${next.href} answered ${res.status} without a redirect: ${await res.text()}`);
      next = step(new URL(location, next));
      if (next.href.startsWith(stopAt)) return next;
    }
    throw new Error(`no redirect to ${stopAt} after 10 hops`);
  }
}
