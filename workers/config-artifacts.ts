/**
 * Where artifacts live: files under DATA_DIR (`ARTIFACT_STORE=disk`, one machine) or an S3-compatible bucket
 * (`ARTIFACT_STORE=s3`) that every worker and API process shares. Credentials come from files others cannot read,
 * or, when those are unset, from the SDK's default chain (environment, shared profile, instance or pod role).
 */
import path from 'node:path';
import { z } from 'zod';
import { isSafePrefix, type S3StoreSettings } from '../activities/artifacts/s3';
import { ConfigError } from './config-error';
import { readSecretFile } from './secret-files';

/** A bucket name as S3 and the usual S3-compatible servers accept it: no `/`, nothing a URL would have to escape. */
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{2,254}$/;

/** The variables the artifact store is configured from. */
export const ArtifactStoreEnv = z.object({
  /** `disk` (default): files under DATA_DIR/artifacts. `s3`: objects in S3_BUCKET, for more than one machine. */
  ARTIFACT_STORE: z.enum(['disk', 's3']).default('disk'),
  /** `disk`: the directory (default DATA_DIR/artifacts); workers on one machine, or on one shared volume, can share it. */
  ARTIFACTS_DIR: z.string().min(1).optional(),
  S3_BUCKET: z.string().regex(BUCKET, 'a bucket name (letters, digits, ".", "-", "_")').optional(),
  /** An S3-compatible server's URL, e.g. `http://seaweedfs.storage:8333`; unset: AWS's endpoint for S3_REGION. */
  S3_ENDPOINT: z.string().optional(),
  S3_REGION: z.string().regex(/^[a-z0-9-]{1,64}$/, 'a region name such as us-east-1').default('us-east-1'),
  /** Key prefix of every artifact, e.g. `agent-inbox/`; `/`-separated segments of letters, digits, ".", "-", "_". */
  S3_PREFIX: z
    .string()
    .default('')
    .transform((v) => (v === '' || v.endsWith('/') ? v : `${v}/`))
    .refine(isSafePrefix, 'segments of letters, digits, ".", "-", "_" separated by "/" (no "." or ".." segment, no leading "/")'),
  /** `true`: `<endpoint>/<bucket>/<key>` addressing; default true with S3_ENDPOINT (most S3-compatible servers want it), else false. */
  S3_FORCE_PATH_STYLE: z.enum(['true', 'false']).optional(),
  /** Files holding the access key id and the secret access key; both or neither (then the SDK's default chain). */
  S3_ACCESS_KEY_ID_FILE: z.string().min(1).optional(),
  S3_SECRET_ACCESS_KEY_FILE: z.string().min(1).optional(),
});
/** The parsed variables. */
export type ArtifactStoreEnv = z.infer<typeof ArtifactStoreEnv>;

/** The artifact store a process uses. */
export type ArtifactStoreSettings = { kind: 'disk'; dir: string } | { kind: 's3'; s3: S3StoreSettings };

/** The artifact store of `env`; throws a {@link ConfigError} naming a missing or bad variable (never quoting a credential). */
export function loadArtifactStoreSettings(env: NodeJS.ProcessEnv, dataDir: string): ArtifactStoreSettings {
  const bad = (name: string, why: string) => new ConfigError(`invalid configuration: ${name}: ${why}`);
  const parsed = ArtifactStoreEnv.safeParse(env);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const v = parsed.data;
  if (v.ARTIFACT_STORE === 'disk') return { kind: 'disk', dir: path.resolve(v.ARTIFACTS_DIR ?? path.join(dataDir, 'artifacts')) };
  if (v.S3_BUCKET === undefined) throw bad('S3_BUCKET', 'required with ARTIFACT_STORE=s3');
  const endpoint = v.S3_ENDPOINT === undefined ? undefined : endpointOf(v.S3_ENDPOINT);
  if (typeof endpoint === 'object') throw bad('S3_ENDPOINT', endpoint.error);
  if ((v.S3_ACCESS_KEY_ID_FILE === undefined) !== (v.S3_SECRET_ACCESS_KEY_FILE === undefined)) {
    throw bad(v.S3_ACCESS_KEY_ID_FILE === undefined ? 'S3_ACCESS_KEY_ID_FILE' : 'S3_SECRET_ACCESS_KEY_FILE', 'set S3_ACCESS_KEY_ID_FILE and S3_SECRET_ACCESS_KEY_FILE together');
  }
  let credentials: S3StoreSettings['credentials'];
  if (v.S3_ACCESS_KEY_ID_FILE !== undefined && v.S3_SECRET_ACCESS_KEY_FILE !== undefined) {
    const accessKeyId = readSecretFile('S3_ACCESS_KEY_ID_FILE', v.S3_ACCESS_KEY_ID_FILE, dataDir, 1);
    const secretAccessKey = readSecretFile('S3_SECRET_ACCESS_KEY_FILE', v.S3_SECRET_ACCESS_KEY_FILE, dataDir, 1);
    if (/\s/.test(accessKeyId)) throw bad('S3_ACCESS_KEY_ID_FILE', 'the file must hold the key id alone, on one line');
    if (/\s/.test(secretAccessKey)) throw bad('S3_SECRET_ACCESS_KEY_FILE', 'the file must hold the secret alone, on one line');
    credentials = { accessKeyId, secretAccessKey };
  }
  return {
    kind: 's3',
    s3: {
      bucket: v.S3_BUCKET,
      prefix: v.S3_PREFIX,
      region: v.S3_REGION,
      ...(endpoint !== undefined ? { endpoint } : {}),
      forcePathStyle: v.S3_FORCE_PATH_STYLE === undefined ? endpoint !== undefined : v.S3_FORCE_PATH_STYLE === 'true',
      ...(credentials !== undefined ? { credentials } : {}),
    },
  };
}

/** The endpoint without a trailing slash, or why `value` is not one: an http(s) origin, with no credentials, path or query. */
function endpointOf(value: string): string | { error: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: 'not a URL (e.g. http://seaweedfs.storage:8333)' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { error: 'an http or https URL' };
  // Credentials go in the key files: a URL carrying them would reach logs, errors and the health page.
  if (url.username || url.password) return { error: 'a URL without credentials (use S3_ACCESS_KEY_ID_FILE and S3_SECRET_ACCESS_KEY_FILE)' };
  if (url.search || url.hash || url.pathname !== '/') return { error: 'the origin only (scheme, host, port): no path or query' };
  return url.origin;
}
