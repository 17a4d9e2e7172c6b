/**
 * JWT bearer tokens for programs: an access token the identity provider signed (e.g. from its client
 * credentials grant), verified against the keys its discovery names, for this API's audience.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWSAlgorithm } from 'jose';
import { identityFromClaims, UnusableClaimsError, type AccessConfig, type ClaimNames } from '../../domain/access';
import { HttpError } from '../errors';
import { UnauthenticatedError, type Authenticated, type CredentialSource } from './context';
import { sha256 } from './digest';
import { bearerToken } from './tokens';

/** Signature algorithms a provider's token may use: asymmetric only (no `none`, no HS* whose key would be the client secret). */
export const JWT_ALGORITHMS: readonly JWSAlgorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
/** Seconds of clock difference with the provider allowed on `exp`, `nbf` and `iat`. */
export const JWT_CLOCK_TOLERANCE_S = 30;
/** Longest `jti` kept as the credential's id (it goes into traces); a longer one is replaced by the token's hash. */
const MAX_JTI_CHARS = 128;
/** Hex characters of the token's SHA-256 that name a token without a (usable) `jti`. */
const TOKEN_HASH_CHARS = 16;
/** After the provider's keys could not be fetched, how long JWTs are answered 503 without fetching again. */
const KEYS_RETRY_MS = 5_000;

/** Thrown when a JWT cannot be checked because the provider's keys cannot be read (503): not the caller's fault. */
export class KeysUnavailableError extends HttpError {
  override readonly name = 'KeysUnavailableError';
  constructor(cause?: unknown) {
    super(503, 'idp_unreachable', "the identity provider's keys cannot be read now; try again shortly", { cause });
  }
}

/** How a JWS in compact form looks: three base64url parts (the last empty for `alg: none`, refused later). */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Whether a bearer token is shaped like a JWT (and so belongs to the JWT source, not the API token one). */
export function looksLikeJwt(token: string): boolean {
  return JWT_SHAPE.test(token);
}

/** What the JWT source checks tokens against and maps their claims with. */
export interface JwtSourceOptions {
  issuer: string;
  /** The provider's `jwks_uri`; keys are fetched once and again when a token names an unknown `kid`. */
  jwksUri: string;
  audience: string;
  claims: ClaimNames;
  access: Pick<AccessConfig, 'people' | 'groups'>;
}

/**
 * A credential source for `Authorization: Bearer <JWT>`: signature by one of the provider's keys with an allowed
 * algorithm, `iss`, `aud`, `exp` (required) and `nbf` within {@link JWT_CLOCK_TOLERANCE_S}. Any other bearer token is left to the other sources.
 */
export function jwtSource(opts: JwtSourceOptions): CredentialSource {
  // Keys kept until a token names one we lack (rotation): a provider outage does not expire the ones we have.
  const keys = createRemoteJWKSet(new URL(opts.jwksUri), { cacheMaxAge: Infinity });
  let keysFailedAt = -Infinity;
  return {
    name: 'jwt',
    async authenticate(req): Promise<Authenticated | null> {
      const token = bearerToken(req);
      if (token === null || !looksLikeJwt(token)) return null;
      // With no keys yet and the last fetch failed just now, junk tokens may not make us fetch once per request.
      if (keys.jwks() === undefined && Date.now() - keysFailedAt < KEYS_RETRY_MS) throw new KeysUnavailableError();
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(token, keys, {
          issuer: opts.issuer,
          audience: opts.audience,
          algorithms: [...JWT_ALGORITHMS],
          clockTolerance: JWT_CLOCK_TOLERANCE_S,
          requiredClaims: ['exp', 'sub'],
        }));
      } catch (err) {
        // Anything but a JOSE error is the provider's keys unreachable: a 503, and a pause before fetching again.
        if (!(err instanceof errors.JOSEError) || err instanceof errors.JWKSTimeout) {
          keysFailedAt = Date.now();
          throw new KeysUnavailableError(err);
        }
        throw new UnauthenticatedError(`the JWT does not verify: ${whyRefused(err)}`, { cause: err });
      }
      // An ID token (it carries our sign-in nonce) is a person's proof to this API's web sign-in, not a program's credential.
      if (payload.nonce !== undefined) throw new UnauthenticatedError('the JWT is an ID token; send an access token');
      const jti = payload.jti;
      const id = typeof jti === 'string' && jti.length > 0 && jti.length <= MAX_JTI_CHARS ? jti : sha256(token).toString('hex').slice(0, TOKEN_HASH_CHARS);
      try {
        return { identity: identityFromClaims(payload, opts.access, { names: opts.claims, via: { kind: 'jwt', id } }), carrier: 'bearer' };
      } catch (err) {
        if (err instanceof UnusableClaimsError) throw new UnauthenticatedError(`the JWT cannot stand for a caller: ${err.message}`, { cause: err });
        throw err;
      }
    },
  };
}

/** A short reason for a refused JWT that names the failed check but none of the token's content. */
function whyRefused(err: errors.JOSEError): string {
  if (err instanceof errors.JWTExpired) return 'it has expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `the ${err.claim} claim ${err.reason === 'missing' ? 'is missing' : 'is not what this API expects'}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'its algorithm is not allowed';
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWSSignatureVerificationFailed) return "it is not signed by the identity provider's keys";
  if (err instanceof errors.JWKSTimeout) return "the identity provider's keys could not be read in time";
  return 'it is malformed';
}
