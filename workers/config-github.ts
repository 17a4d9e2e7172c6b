/**
 * The worker's access to GitHub's API, for the pull requests of tasks that came from issues: where the API is,
 * and a personal access token or a GitHub App's id and private key, each read once from a file others cannot
 * read and kept out of the environment children inherit. Neither set: tasks publish their branch and nothing else.
 */
import crypto from 'node:crypto';
import { z } from 'zod';
import type { GithubAccess } from '../activities/github/client';
import { isLoopbackHost } from '../api/auth/local-admin';
import { ConfigError, readSecretFile } from './config';

/** The variables GitHub access is configured from. */
export const GithubAccessEnv = z.object({
  /** GitHub's REST API: `https://api.github.com`, or `https://<host>/api/v3` for GitHub Enterprise Server. */
  GITHUB_API_URL: z.string().default('https://api.github.com'),
  /** A file holding a personal access token (fine-grained: pull requests, contents read, commit statuses). */
  GITHUB_TOKEN_FILE: z.string().min(1).optional(),
  /** A GitHub App's numeric id; with GITHUB_APP_PRIVATE_KEY_FILE, the worker acts as the App's installation on each repository. */
  GITHUB_APP_ID: z.string().optional(),
  /** A file holding the App's private key (PEM, as GitHub hands it out). */
  GITHUB_APP_PRIVATE_KEY_FILE: z.string().min(1).optional(),
});
/** The parsed variables. */
export type GithubAccessEnv = z.infer<typeof GithubAccessEnv>;

/** Shortest token a file may hold: GitHub's are 40 characters or more, so anything shorter is a mistake. */
const MIN_TOKEN_CHARS = 20;

/** GitHub access from `env`, or null when neither a token nor an App is configured; throws a {@link ConfigError} naming a bad variable. */
export function loadGithubAccess(env: NodeJS.ProcessEnv, dataDir: string): GithubAccess | null {
  const bad = (name: string, why: string) => new ConfigError(`invalid configuration: ${name}: ${why}`);
  const parsed = GithubAccessEnv.safeParse(env);
  if (!parsed.success) throw new ConfigError(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const v = parsed.data;
  const apiUrl = apiUrlOf(v.GITHUB_API_URL);
  if (typeof apiUrl !== 'string') throw bad('GITHUB_API_URL', apiUrl.error);

  const app = v.GITHUB_APP_ID !== undefined || v.GITHUB_APP_PRIVATE_KEY_FILE !== undefined;
  if (v.GITHUB_TOKEN_FILE !== undefined && app) throw bad('GITHUB_TOKEN_FILE', 'set it or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY_FILE, not both');
  if (v.GITHUB_TOKEN_FILE !== undefined) {
    const token = readSecretFile('GITHUB_TOKEN_FILE', v.GITHUB_TOKEN_FILE, dataDir, MIN_TOKEN_CHARS);
    if (/\s/.test(token)) throw bad('GITHUB_TOKEN_FILE', 'the file must hold the token alone, on one line');
    return { apiUrl, auth: { kind: 'token', token } };
  }
  if (!app) return null;
  if (v.GITHUB_APP_ID === undefined) throw bad('GITHUB_APP_ID', 'required with GITHUB_APP_PRIVATE_KEY_FILE: the App the key belongs to');
  if (v.GITHUB_APP_PRIVATE_KEY_FILE === undefined) throw bad('GITHUB_APP_PRIVATE_KEY_FILE', 'required with GITHUB_APP_ID: the App signs its requests with it');
  if (!/^[1-9][0-9]{0,15}$/.test(v.GITHUB_APP_ID.trim())) throw bad('GITHUB_APP_ID', 'the App\'s numeric id (its settings page shows it as "App ID")');
  const privateKey = readSecretFile('GITHUB_APP_PRIVATE_KEY_FILE', v.GITHUB_APP_PRIVATE_KEY_FILE, dataDir, 1);
  try {
    crypto.createPrivateKey(privateKey);
  } catch {
    // The parser's message is left out: it may quote the key.
    throw bad('GITHUB_APP_PRIVATE_KEY_FILE', 'not a PEM private key (download one from the App\'s settings)');
  }
  return { apiUrl, auth: { kind: 'app', appId: Number(v.GITHUB_APP_ID.trim()), privateKey } };
}

/** The API's base URL without a trailing slash, or why `value` is not one (an http(s) URL without credentials, query or fragment). */
function apiUrlOf(value: string): string | { error: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: 'not a URL (e.g. https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise Server)' };
  }
  // The token travels with every request: plain http only to this host.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) return { error: 'an https URL (plain http only on loopback)' };
  // Credentials go in GITHUB_TOKEN_FILE or the App's key: a URL carrying them would reach logs and errors.
  if (url.username || url.password || url.search || url.hash) return { error: 'a URL without credentials, query or fragment' };
  return value.replace(/\/+$/, '');
}
