/**
 * Signing people in with OpenID Connect: the provider's metadata found once at start, the authorization code
 * flow with PKCE (S256), `state` and `nonce` kept in a short-lived signed cookie, and the verified claims of the
 * ID token (and userinfo) mapped to an identity. openid-client checks the code exchange, state, nonce and the
 * ID token's issuer, audience and expiry; the token comes straight from the provider's token endpoint over TLS,
 * which OpenID Connect Core (3.1.3.7) lets stand for its signature.
 */
import type { Request, Response } from 'express';
import * as oidc from 'openid-client';
import { identityFromClaims, UnusableClaimsError, type AccessConfig, type ClaimNames, type Identity } from '../../domain/access';
import { HttpError } from '../errors';
import type { Sessions } from './session';

/** What the operator configured for the identity provider (`OIDC_*`, PUBLIC_URL). */
export interface OidcSettings {
  /** The issuer identifier; its `/.well-known/openid-configuration` is read at start. */
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** The `aud` a JWT bearer token must carry. */
  audience: string;
  scopes: string[];
  claims: ClaimNames;
  /** `${PUBLIC_URL}/login/callback`, registered at the provider. */
  redirectUri: string;
}

/** The cookie holding one sign-in's state, nonce and PKCE verifier between `/login/oidc` and the callback. */
export const OIDC_FLOW_COOKIE = 'agent_inbox_oidc';
/** How long a person has at the provider before the sign-in must start over. */
export const OIDC_FLOW_TTL_MS = 10 * 60_000;
/** Seconds the discovery and other requests to the provider may take. */
const PROVIDER_TIMEOUT_S = 10;
/** The purpose the flow cookie is signed for: a session cookie can never pass for one, nor the other way round. */
const FLOW_PURPOSE = 'oidc-login';
/** Most spent states remembered; past it the oldest are forgotten (their flow cookies were cleared when spent anyway). */
const SPENT_STATES_MAX = 10_000;

/** What the flow cookie carries, signed. */
interface FlowPayload {
  state: string;
  nonce: string;
  verifier: string;
  exp: number;
}

/** Thrown when a sign-in through the provider is refused: a bad or missing state, a replayed code, an error from the provider, a token that does not verify (401). */
export class OidcLoginRefusedError extends HttpError {
  override readonly name = 'OidcLoginRefusedError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(401, 'login_refused', message, options);
  }
}

/** Thrown when the identity provider cannot be reached during a sign-in (502). */
export class IdentityProviderUnreachableError extends HttpError {
  override readonly name = 'IdentityProviderUnreachableError';
  constructor(cause: unknown, message = 'the identity provider did not answer; try again') {
    super(502, 'idp_unreachable', message, { cause });
  }
}

/** The provider's metadata (`discovery` checks its issuer is the one configured) and this client's registration, read once. */
export async function discoverProvider(settings: OidcSettings): Promise<oidc.Configuration> {
  const issuer = new URL(settings.issuer);
  // Plain http only for a loopback issuer: the configuration refuses any other.
  const insecure = issuer.protocol === 'http:';
  const found = await oidc.discovery(issuer, settings.clientId, undefined, undefined, { timeout: PROVIDER_TIMEOUT_S, ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}) });
  const metadata = found.serverMetadata();
  const methods = metadata.token_endpoint_auth_methods_supported;
  // client_secret_basic is the default every provider supports unless it lists only client_secret_post.
  const auth = methods !== undefined && !methods.includes('client_secret_basic') && methods.includes('client_secret_post') ? oidc.ClientSecretPost : oidc.ClientSecretBasic;
  const config = new oidc.Configuration(metadata, settings.clientId, { redirect_uris: [settings.redirectUri] }, auth(settings.clientSecret));
  config.timeout = PROVIDER_TIMEOUT_S;
  if (insecure) oidc.allowInsecureRequests(config);
  return config;
}

/** The sign-in flow at one provider: where to send a person, and who they are when they come back. */
export class OidcSignIn {
  /** States already brought back, until their flow would have expired: a replayed callback is refused here too. */
  private readonly spent = new Map<string, number>();
  /** What the web app shows on its sign-in button. */
  readonly providerName: string;

  constructor(
    private readonly config: oidc.Configuration,
    private readonly settings: OidcSettings,
    private readonly sessions: Sessions,
    private readonly access: Pick<AccessConfig, 'people' | 'groups'>,
    private readonly now: () => number = Date.now,
  ) {
    this.providerName = new URL(config.serverMetadata().issuer).host;
  }

  /** The provider's authorization URL for a new sign-in; its state, nonce and PKCE verifier go into the flow cookie. */
  async begin(res: Response): Promise<URL> {
    const flow: FlowPayload = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier: oidc.randomPKCECodeVerifier(), exp: this.now() + OIDC_FLOW_TTL_MS };
    this.sessions.setSealedCookie(res, OIDC_FLOW_COOKIE, FLOW_PURPOSE, flow, OIDC_FLOW_TTL_MS);
    return oidc.buildAuthorizationUrl(this.config, {
      redirect_uri: this.settings.redirectUri,
      scope: this.settings.scopes.join(' '),
      state: flow.state,
      nonce: flow.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(flow.verifier),
      code_challenge_method: 'S256',
    });
  }

  /**
   * Completes a sign-in from the provider's redirect: the flow cookie must be there, unspent and match the
   * response's state; the code is exchanged with the PKCE verifier; the ID token must carry our nonce. The
   * flow cookie is dropped whatever happens. Returns the identity the claims map to (via is the provider).
   */
  async complete(req: Request, res: Response): Promise<Identity> {
    const flow = this.sessions.readSealedCookie<FlowPayload>(req, OIDC_FLOW_COOKIE, FLOW_PURPOSE);
    this.sessions.clearCookie(res, OIDC_FLOW_COOKIE);
    if (flow === null) throw new OidcLoginRefusedError('this sign-in did not start here, or took too long; sign in again at /login');
    this.prune();
    if (this.spent.has(flow.state)) throw new OidcLoginRefusedError('this sign-in was completed already; sign in again at /login');
    this.spent.set(flow.state, flow.exp);
    // The response's parameters on the registered redirect URI, whatever path a proxy in front made of it.
    const current = new URL(this.settings.redirectUri);
    current.search = new URL(req.originalUrl, current).search;
    let claims: Record<string, unknown>;
    try {
      const tokens = await oidc.authorizationCodeGrant(this.config, current, { pkceCodeVerifier: flow.verifier, expectedState: flow.state, expectedNonce: flow.nonce, idTokenExpected: true });
      const idClaims = tokens.claims()!;
      const info = this.config.serverMetadata().userinfo_endpoint !== undefined ? await oidc.fetchUserInfo(this.config, tokens.access_token, idClaims.sub) : {};
      // The ID token's own claims (iss, aud, sub, nonce) win over anything userinfo says.
      claims = { ...info, ...idClaims };
    } catch (err) {
      throw refusal(err);
    }
    try {
      return identityFromClaims(claims, this.access, { names: this.settings.claims, via: { kind: 'session', id: this.providerName } });
    } catch (err) {
      if (err instanceof UnusableClaimsError) throw new OidcLoginRefusedError(err.message, { cause: err });
      throw err;
    }
  }

  /** Forgets expired states from the oldest end (insertion order is expiry order), and the oldest past the cap: constant work per callback. */
  private prune(): void {
    const now = this.now();
    for (const [state, exp] of this.spent) {
      if (exp > now && this.spent.size < SPENT_STATES_MAX) break;
      this.spent.delete(state);
    }
  }
}

/** What a failed code flow becomes: the provider's own error or a failed check is a 401 naming it; no answer is a 502. */
function refusal(err: unknown): Error {
  if (err instanceof oidc.AuthorizationResponseError) return new OidcLoginRefusedError(`the identity provider refused the sign-in: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`, { cause: err });
  if (err instanceof oidc.ResponseBodyError) return new OidcLoginRefusedError(`the identity provider refused the code: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`, { cause: err });
  if (err instanceof oidc.ClientError) {
    // openid-client's message is generic ("invalid response encountered"); the check that failed is in its cause.
    const detail = err.cause instanceof Error && err.cause.message !== err.message ? `: ${err.cause.message}` : '';
    return new OidcLoginRefusedError(`the identity provider's response did not verify (${err.message}${detail})`, { cause: err });
  }
  // The provider refused our client (a wrong client secret): the operator's problem, said as such.
  if (err instanceof oidc.WWWAuthenticateChallengeError) return new IdentityProviderUnreachableError(err, 'the identity provider refused this backend as a client; check OIDC_CLIENT_ID and its secret');
  if (err instanceof TypeError) return new IdentityProviderUnreachableError(err);
  return err instanceof Error ? err : new Error(String(err));
}
