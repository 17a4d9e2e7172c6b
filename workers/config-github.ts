/**
 * The worker's access to GitHub's API, for the pull requests of tasks that came from issues: where the API is,
 * and a personal access token or a GitHub App's id and private key, each read once from a file others cannot
 * read and kept out of the environment children inherit. Neither set: tasks publish their branch and nothing else.
 * Also GitHub intake's settings (the webhook secret, the planner, merging and CI rounds) and where git reaches GitHub.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { MIN_SECRET_CHARS } from '../activities/egress/token';
import type { GithubAccess } from '../activities/github/client';
import { isLoopbackHost } from '../api/auth/local-admin';
import type { GithubIntakeSettings } from '../api/github/webhook';
import { Planner } from '../domain/task';
import type { Config } from './config';
import { ConfigError } from './config-error';
import { readSecretFile } from './secret-files';

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

/** GitHub intake's settings, or null when no webhook secret is set; throws a {@link ConfigError} naming a bad variable. */
export function githubIntakeSettings(cfg: z.infer<typeof Config>, dataDir: string): GithubIntakeSettings | null {
  const bad = (name: string, why: string) => new ConfigError(`invalid configuration: ${name}: ${why}`);
  if (cfg.GITHUB_WEBHOOK_SECRET !== undefined && cfg.GITHUB_WEBHOOK_SECRET_FILE !== undefined) throw bad('GITHUB_WEBHOOK_SECRET_FILE', 'set it or GITHUB_WEBHOOK_SECRET, not both');
  let secret = cfg.GITHUB_WEBHOOK_SECRET;
  if (cfg.GITHUB_WEBHOOK_SECRET_FILE !== undefined) {
    secret = readSecretFile('GITHUB_WEBHOOK_SECRET_FILE', cfg.GITHUB_WEBHOOK_SECRET_FILE, dataDir, MIN_SECRET_CHARS);
  } else if (secret !== undefined && secret.length < MIN_SECRET_CHARS) {
    throw bad('GITHUB_WEBHOOK_SECRET', `the secret is shorter than ${MIN_SECRET_CHARS} characters`);
  }
  if (secret === undefined) return null;
  if (cfg.GITHUB_PLANNER === undefined) throw bad('GITHUB_PLANNER', 'required with GitHub intake: the planner of the tasks issues start, as JSON (e.g. {"kind":"llm","model":"gemini-2.5-flash"})');
  let raw: unknown;
  try {
    raw = JSON.parse(cfg.GITHUB_PLANNER);
  } catch {
    throw bad('GITHUB_PLANNER', 'not JSON');
  }
  const planner = Planner.safeParse(raw);
  if (!planner.success) throw bad('GITHUB_PLANNER', planner.error.issues.map((i) => `${i.path.join('.') || '(planner)'}: ${i.message}`).join('; '));
  const mergeMethod = cfg.GITHUB_MERGE_ON_APPROVE === 'off' ? null : cfg.GITHUB_MERGE_ON_APPROVE;
  return { secret, gitBase: githubGitBase(cfg), label: cfg.GITHUB_LABEL, planner: planner.data, botAllow: cfg.GITHUB_BOT_ALLOW, mention: cfg.GITHUB_MENTION ?? null, mergeMethod, maxCiRounds: cfg.GITHUB_MAX_CI_ROUNDS };
}

/** GITHUB_GIT_BASE without its trailing slash: a URL without credentials, or an absolute directory; throws a {@link ConfigError}. */
export function githubGitBase(cfg: z.infer<typeof Config>): string {
  const bad = (why: string) => new ConfigError(`invalid configuration: GITHUB_GIT_BASE: ${why}`);
  const base = cfg.GITHUB_GIT_BASE.replace(/\/+$/, '');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(base)) {
    const url = new URL(base);
    // The worker's git gets GitHub's token (or GIT_CREDENTIALS_FILE's): a URL carrying one would reach every task's spec and trace.
    if (url.username || url.password || url.search || url.hash) throw bad('a URL without credentials, query or fragment (the worker supplies them: GITHUB_TOKEN_FILE, the App, or GIT_CREDENTIALS_FILE)');
    return base;
  }
  if (path.isAbsolute(base)) return path.resolve(base);
  throw bad('a URL (e.g. https://github.com) or an absolute directory');
}
