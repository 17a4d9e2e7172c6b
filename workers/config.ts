/**
 * Process configuration, parsed once from the environment; a bad value fails fast naming the variable.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { AccessConfig, SELF_EDITABLE_CLAIMS } from '../domain/access';
import { DEFAULT_MAX_CI_ROUNDS, MAX_CI_ROUNDS_LIMIT } from '../domain/checks';
import { isLoopbackHost } from '../api/auth/local-admin';
import type { OidcSettings } from '../api/auth/oidc';
import type { GithubIntakeSettings } from '../api/github/webhook';
import type { GithubAccess } from '../activities/github/client';
import { loadArtifactStoreSettings, type ArtifactStoreSettings } from './config-artifacts';
import { githubGitBase, githubIntakeSettings, loadGithubAccess } from './config-github';
import { ConfigError } from './config-error';
import { readEgressProxySecret, readSecretFile } from './secret-files';
import { MERGE_METHODS } from '../domain/merge';
import { MIN_SECRET_CHARS } from '../activities/egress/token';
import { DEFAULT_COPY_BACK_MAX_FILES } from '../activities/sandbox/k8s';
import { EgressHostsVar } from './egress-proxy-config';
import {
  DEFAULT_SANDBOX_RELEASE_AFTER_MINUTES,
  MAX_WORKER_SANDBOXES,
  DEFAULT_WORKER_LOST_AFTER_SECONDS,
  MAX_SANDBOX_RELEASE_AFTER_MINUTES,
  MAX_WORKER_LOST_AFTER_SECONDS,
  MIN_WORKER_LOST_AFTER_SECONDS,
  WORKER_ID_PATTERN,
} from './placement';
import { InvalidPriceTableError, loadPriceTable } from '../domain/prices';
import { egressEntryError } from '../domain/egress';
import { DEFAULT_REPO_ALLOW, isWithin, type RepoRules } from '../domain/repo-policy';

/** A comma- or whitespace-separated list; unset means `fallback`, set but empty means none. */
function list(fallback: readonly string[]) {
  return z
    .string()
    .optional()
    .transform((v) => (v === undefined ? [...fallback] : v.split(/[\s,]+/).filter(Boolean)));
}

/** The name of a claim that grants role, teams or groups: never one people edit themselves; `fallback` when unset, none when empty. */
function claimName(fallback?: string) {
  return z
    .string()
    .optional()
    .transform((v) => (v === undefined ? fallback : v.trim() === '' ? undefined : v.trim()))
    .refine((v) => v === undefined || !SELF_EDITABLE_CLAIMS.includes(v), 'a claim people edit themselves (name, email, …) cannot grant a role, team or group');
}

export { ConfigError } from './config-error';
export { readEgressProxySecret, readSecretFile } from './secret-files';

/** Every environment variable the backend reads. */
export const Config = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('127.0.0.1'),
  DATA_DIR: z.string().default('./.data'),
  TEMPORAL_ADDRESS: z.string().optional(),
  TEMPORAL_NAMESPACE: z.string().default('default'),
  /** Ports of the embedded dev server (used only when TEMPORAL_ADDRESS is unset). */
  TEMPORAL_PORT: z.coerce.number().int().min(1).max(65535).default(7233),
  TEMPORAL_UI_PORT: z.coerce.number().int().min(1).max(65535).default(8233),
  TEMPORAL_TASK_QUEUE: z.string().default('agent-tasks'),
  /** Where the Temporal CLI is cached when it has to be installed. */
  TEMPORAL_CLI_CACHE: z.string().default('./.cache/temporal'),
  /**
   * Where commands run: `gvisor` (runsc on this host), `k8s` (a gVisor pod per task), `process` (no isolation),
   * or `auto`: gvisor where runsc is installed and this process is root, else process with a loud warning.
   */
  SANDBOX_DRIVER: z.enum(['auto', 'gvisor', 'k8s', 'process']).default('auto'),
  /** The unprivileged user commands run as inside gVisor sandboxes and pods. */
  SANDBOX_UID: z.coerce.number().int().min(1).max(2 ** 31 - 1).default(65534),
  SANDBOX_GID: z.coerce.number().int().min(1).max(2 ** 31 - 1).default(65534),
  /** gVisor: memory of one sandbox, processes one command may have, size of its private /tmp. */
  SANDBOX_MEMORY_MB: z.coerce.number().int().min(64).default(2048),
  SANDBOX_MAX_PROCESSES: z.coerce.number().int().min(8).default(512),
  SANDBOX_TMP_MB: z.coerce.number().int().min(8).default(512),
  /**
   * gVisor: each working copy's own disk (a sparse ext4 image, so unused space costs nothing), the files it
   * holds, and the largest file a command may write. `SANDBOX_DISK_MB=0` puts working copies on the worker's disk, unbounded.
   */
  SANDBOX_DISK_MB: z.coerce.number().int().min(0).default(8192),
  SANDBOX_DISK_FILES: z.coerce.number().int().min(1_000).default(500_000),
  SANDBOX_FILE_MB: z.coerce.number().int().min(1).default(2048),
  /** gVisor: a directory to use as the read-only root file system instead of the host's /usr and /etc. */
  SANDBOX_ROOTFS: z.string().optional(),
  /** gVisor: extra global runsc flags, space-separated (e.g. `--platform=ptrace`). */
  RUNSC_FLAGS: z
    .string()
    .default('')
    .transform((v) => v.split(/\s+/).filter(Boolean)),
  /** k8s: namespace of the sandbox pods, their image and RuntimeClass (empty: the cluster's default runtime). */
  K8S_NAMESPACE: z.string().default('agent-sandboxes'),
  K8S_SANDBOX_IMAGE: z.string().default('node:20-bookworm'),
  K8S_RUNTIME_CLASS: z.string().default('gvisor'),
  /** k8s: size of a pod's workspace emptyDir (a Kubernetes quantity); what a pod's copy-back may bring at most is this too. */
  K8S_WORKSPACE_SIZE: z.string().regex(/^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$/, 'a Kubernetes quantity such as 2Gi').default('2Gi'),
  /** k8s: files one copy-back from a pod may bring at most. */
  K8S_COPY_BACK_MAX_FILES: z.coerce.number().int().min(1).default(DEFAULT_COPY_BACK_MAX_FILES),
  /**
   * k8s: the cluster's egress proxy, which commands granted egress use, as `URL namespace label=value[,label=value]`,
   * e.g. `http://egress-proxy.agent-inbox:3128 agent-inbox app.kubernetes.io/name=egress-proxy`. Needs
   * EGRESS_PROXY_SECRET_FILE and K8S_EGRESS_PROXY_REPORT_URL.
   */
  K8S_EGRESS_PROXY: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (!v) return undefined;
      const [url, namespace, labels] = v.trim().split(/\s+/);
      let port: number;
      try {
        const u = new URL(url!);
        port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
      } catch {
        ctx.addIssue({ code: 'custom', message: 'expected "URL namespace label=value[,label=value]"' });
        return z.NEVER;
      }
      const podLabels = Object.fromEntries((labels ?? '').split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
      if (!namespace || Object.keys(podLabels).length === 0) {
        ctx.addIssue({ code: 'custom', message: 'expected "URL namespace label=value[,label=value]"' });
        return z.NEVER;
      }
      return { url: url!, namespace, podLabels, port };
    }),
  /** k8s: the egress proxy's report port (`egress-proxy-main`'s admin listener), e.g. `http://egress-proxy.agent-inbox:3129`. */
  K8S_EGRESS_PROXY_REPORT_URL: z
    .string()
    .optional()
    .superRefine((v, ctx) => {
      const why = v === undefined ? null : reportUrlError(v);
      if (why !== null) ctx.addIssue({ code: 'custom', message: why });
    }),
  /**
   * A file holding the secret the worker shares with the cluster's egress proxy (signs command tokens,
   * authenticates report requests): not readable by others, outside DATA_DIR, at least MIN_SECRET_CHARS long.
   */
  EGRESS_PROXY_SECRET_FILE: z.string().optional(),
  /** Which parts this process runs: `api`, `worker`, or both (scale each out separately in production). */
  ROLES: z
    .string()
    .default('api,worker')
    .transform((v) => v.split(',').map((r) => r.trim()).filter(Boolean))
    .pipe(z.array(z.enum(['api', 'worker'])).min(1)),
  /** Workflows a worker keeps in memory; parked tasks beyond it replay from history when touched. */
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().positive().default(250),
  /** This worker's name and own task queue (`<TEMPORAL_TASK_QUEUE>@<WORKER_ID>`); default: the host name and a hash of DATA_DIR, stable across restarts. */
  WORKER_ID: z.string().regex(WORKER_ID_PATTERN, 'letters, digits, dot, dash and underscore, at most 100').optional(),
  /** Seconds a task's sandbox work may wait for its worker before the worker counts as gone and the task re-provisions elsewhere. */
  WORKER_LOST_AFTER_SECONDS: z.coerce.number().int().min(MIN_WORKER_LOST_AFTER_SECONDS).max(MAX_WORKER_LOST_AFTER_SECONDS).default(DEFAULT_WORKER_LOST_AFTER_SECONDS),
  /** Minutes a task waits on a human before its sandbox is released (checkpointed and torn down); 0 never releases. */
  SANDBOX_RELEASE_AFTER_MINUTES: z.coerce.number().min(0).max(MAX_SANDBOX_RELEASE_AFTER_MINUTES).default(DEFAULT_SANDBOX_RELEASE_AFTER_MINUTES),
  /** Live sandboxes this worker holds at most; tasks beyond it wait in `queued`, by priority (0: no cap). */
  WORKER_MAX_SANDBOXES: z.coerce.number().int().min(0).max(MAX_WORKER_SANDBOXES).default(0),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  API_MAX_BODY_BYTES: z.coerce.number().int().positive().default(512 * 1024),
  /**
   * Remote repositories a task may name: globs over the URL without user name (`*` within a path segment, `**` across),
   * comma- or space-separated, e.g. `https://github.com/my-org/**, ssh://github.com/my-org/**`. Default: any https or ssh remote.
   */
  REPO_ALLOW: list(DEFAULT_REPO_ALLOW).pipe(
    z.array(z.string().regex(/^[a-z][a-z0-9+.-]*:\/\/./i, 'each glob matches a URL: it starts with "<scheme>://"')),
  ),
  /**
   * Directories local repositories (paths, `file://` URLs) must be inside, symlinks resolved; comma- or space-separated.
   * Default: the system temp directory. Never DATA_DIR or anything in it, whatever this says. Empty: no local repositories.
   */
  REPO_LOCAL_ROOTS: list([os.tmpdir()]),
  /** A git-credential-store file (`https://user:token@host` per line) the worker's own git reads (never writes) for https remotes. */
  GIT_CREDENTIALS_FILE: z
    .string()
    .optional()
    .refine((v) => v === undefined || !v.includes("'"), 'must not contain a single quote'),
  /** Prices of models, JSON `{"model": {"input": n, "cached_input": n, "output": n}}` (USD per 1M tokens), over the built-in table. */
  MODEL_PRICES: z
    .string()
    .optional()
    .transform((v, ctx) => {
      try {
        return loadPriceTable({ MODEL_PRICES: v });
      } catch (err) {
        if (!(err instanceof InvalidPriceTableError)) throw err;
        ctx.addIssue({ code: 'custom', message: err.message.replace(/^MODEL_PRICES: /, '') });
        return z.NEVER;
      }
    }),
  /**
   * The operator's egress ceiling: domains, `*.` wildcards and presets (npm, pypi, crates, go, maven, debian,
   * github), comma- or space-separated. No sandbox reaches anything outside it; tasks and repositories only
   * narrow it, and a human's grant stays inside it. Default: empty, so no sandbox has any network.
   */
  EGRESS_ALLOW: list([]).pipe(
    z.array(z.string()).superRefine((entries, ctx) => {
      for (const e of entries) {
        const why = egressEntryError(e);
        if (why !== null) ctx.addIssue({ code: 'custom', message: why });
      }
    }),
  ),
  /**
   * Names the egress proxy resolves to given addresses instead of asking DNS, as `name=addr[,addr]` entries
   * separated by whitespace, e.g. an internal mirror. These are the operator's own destinations: private
   * addresses are allowed for them, and only for them. A private or loopback address needs its port
   * (`mirror.internal=10.0.0.5:8080`): a name mapped with ports reaches those ports only.
   */
  EGRESS_HOSTS: EgressHostsVar,
  /** The setup cache: the largest entry kept, and all entries together, in MiB; `SETUP_CACHE_MB=0` turns caching off. */
  SETUP_CACHE_MB: z.coerce.number().int().min(0).default(2_048),
  SETUP_CACHE_TOTAL_MB: z.coerce.number().int().min(1).default(20_480),
  /** Days an ended task stays readable (Temporal's namespace retention and the task's final record); its artifacts are removed after. */
  TASK_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  /** External Temporal only: `true` lets the backend raise the namespace's retention to TASK_RETENTION_DAYS (default: only warn). */
  TEMPORAL_SET_RETENTION: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  /**
   * The operator's team settings (grant ceilings, separation of duties, SLA limits, webhooks) and, with
   * API_AUTH=oidc, the role and teams of the provider's people (`people`, by sub or verified email) and groups
   * (`groups`), a YAML or JSON file in the shape of `AccessConfig` (domain/access.ts). Unset: no teams beyond
   * `default`, and every signed-in person a viewer in no team.
   */
  TEAMS_FILE: z.string().optional(),
  /**
   * Who may call the API. `local` (the default): the local admin token in DATA_DIR/admin-token, a login link for
   * the web inbox, API tokens, and loopback only. `tokens`: API tokens the operator creates (`npm run tokens`)
   * and nothing else, on any HOST, for an API other machines reach. `oidc`: people sign in at an OpenID Connect
   * provider (OIDC_*), programs send its JWTs or API tokens, on any HOST; no local admin token.
   */
  API_AUTH: z.enum(['local', 'tokens', 'oidc']).default('local'),
  /**
   * `API_AUTH=oidc`: people sign in with OpenID Connect at this issuer (https, or http on loopback) and programs
   * may send its JWT access tokens; API tokens still work. Needs OIDC_CLIENT_ID, a client secret and PUBLIC_URL
   * (the redirect URI registered at the provider is `PUBLIC_URL/login/callback`).
   */
  OIDC_ISSUER: z.url().optional(),
  OIDC_CLIENT_ID: z.string().min(1).optional(),
  /** The client secret; prefer OIDC_CLIENT_SECRET_FILE (a file others cannot read) in production. */
  OIDC_CLIENT_SECRET: z.string().min(1).optional(),
  OIDC_CLIENT_SECRET_FILE: z.string().min(1).optional(),
  /** The `aud` a JWT bearer token must carry (default: OIDC_CLIENT_ID). */
  OIDC_AUDIENCE: z.string().min(1).optional(),
  /** Scopes asked for at sign-in; `openid` among them. */
  OIDC_SCOPES: list(['openid', 'profile', 'email']).refine((v) => v.includes('openid'), 'must include openid'),
  /**
   * Claims that say a caller's role (one of viewer, submitter, approver, admin) and teams (names, an array or a
   * space-separated string). Unset: not read, so role and teams come only from TEAMS_FILE's `people` and `groups`.
   * Name only claims the provider's administrators set: a claim people edit themselves is refused.
   */
  OIDC_ROLE_CLAIM: claimName(),
  OIDC_TEAMS_CLAIM: claimName(),
  /** The claim listing a caller's groups, looked up in TEAMS_FILE's `groups` (default `groups`; empty: not read). */
  OIDC_GROUPS_CLAIM: claimName('groups'),
  /** The URL people open the web inbox at (login links name it; https makes the session cookie Secure). Default: http://HOST:PORT. */
  PUBLIC_URL: z.url().optional(),
  /** The Temporal UI a task page links to (default: the embedded dev server's UI, when it runs one). */
  TEMPORAL_UI_URL: z.url().optional(),
  /**
   * GitHub intake: the secret GitHub signs webhook deliveries with (`POST /v1/webhooks/github`), in a file others
   * cannot read (or, less safely, in GITHUB_WEBHOOK_SECRET). Unset: no GitHub intake, and the route answers 404.
   */
  GITHUB_WEBHOOK_SECRET_FILE: z.string().min(1).optional(),
  GITHUB_WEBHOOK_SECRET: z.string().min(1).optional(),
  /** Where GitHub repositories are cloned from: `owner/name` is `GITHUB_GIT_BASE/owner/name.git` (a URL, or a local directory). */
  GITHUB_GIT_BASE: z.string().min(1).default('https://github.com'),
  /** The label that turns an issue into a task when someone adds it. */
  GITHUB_LABEL: z.string().trim().min(1).max(100).default('agent-ready'),
  /** The planner of tasks GitHub issues start, as JSON in the shape of the task's `planner` (required with GitHub intake). */
  GITHUB_PLANNER: z.string().optional(),
  /** Bot logins (e.g. `renovate[bot]`) whose events are acted on; every other bot's are ignored, so bots cannot loop. */
  GITHUB_BOT_ALLOW: list([]),
  /** A login (e.g. the App's `my-agent`) whose mention in a comment speaks to the agent, as `/agent` at a line's start always does. */
  GITHUB_MENTION: z
    .string()
    .trim()
    .regex(/^@?[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/, 'a GitHub login')
    .transform((v) => v.replace(/^@/, ''))
    .optional(),
  /**
   * Whether the worker merges a task's pull request once it is approved in the inbox, and how: `squash`, `merge` or
   * `rebase` (at exactly the approved commit, once GitHub's required checks allow it), or `off`: the task waits for
   * the pull request to be merged on GitHub. Copied into each task when it starts.
   */
  GITHUB_MERGE_ON_APPROVE: z.enum(['off', ...MERGE_METHODS]).default('off'),
  /** CI rounds in a row failing checks on a task's pull request may send its agent back before a health alert asks a human (0: none). */
  GITHUB_MAX_CI_ROUNDS: z.coerce.number().int().min(0).max(MAX_CI_ROUNDS_LIMIT).default(DEFAULT_MAX_CI_ROUNDS),
  /** A process without the API role serves `/healthz` and `/livez` on this port for probes (unset: no health server). */
  HEALTH_PORT: z.coerce.number().int().min(0).max(65535).optional(),
});
/** The parsed configuration, with what the files it names hold; `oidc` is set with `API_AUTH=oidc` only. */
export type Config = z.infer<typeof Config> & {
  access: AccessConfig;
  oidc: OidcSettings | null;
  /** GitHub intake, when a webhook secret is configured and this process serves the API; else null. */
  github: GithubIntakeSettings | null;
  /** The webhook secrets TEAMS_FILE names (`secret_env`), by variable name, read from the environment once. */
  webhookSecrets: Record<string, string>;
  /** The worker's GitHub API access (workers/config-github.ts), or null: no pull requests are opened. */
  githubAccess: GithubAccess | null;
  /** GITHUB_GIT_BASE checked (no trailing slash), for a worker with GitHub access: its git gets GitHub's token there. Else null. */
  githubGitBase: string | null;
  /** Where artifacts live: DATA_DIR/artifacts, or the S3 bucket of ARTIFACT_STORE=s3 (workers/config-artifacts.ts). */
  artifactStore: ArtifactStoreSettings;
};

/** Parse the environment (or `env`), resolving paths against the working directory. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = Config.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const cfg = parsed.data;
  const dataDir = path.resolve(cfg.DATA_DIR);
  const credentials = cfg.GIT_CREDENTIALS_FILE === undefined ? undefined : path.resolve(cfg.GIT_CREDENTIALS_FILE);
  if (credentials !== undefined) {
    // The data directory holds the working copies sandboxes see (and, on k8s, mirror): no secret may live there.
    if (isWithin(credentials, dataDir)) throw new ConfigError('invalid configuration: GIT_CREDENTIALS_FILE: must not be inside DATA_DIR');
    if (!fs.existsSync(credentials)) throw new ConfigError(`invalid configuration: GIT_CREDENTIALS_FILE: no file at ${credentials}`);
  }
  const secretFile = cfg.EGRESS_PROXY_SECRET_FILE === undefined ? undefined : path.resolve(cfg.EGRESS_PROXY_SECRET_FILE);
  if (secretFile !== undefined) {
    if (isWithin(secretFile, dataDir)) throw new ConfigError('invalid configuration: EGRESS_PROXY_SECRET_FILE: must not be inside DATA_DIR');
    readEgressProxySecret(secretFile);
  }
  if (cfg.K8S_EGRESS_PROXY !== undefined && (secretFile === undefined || cfg.K8S_EGRESS_PROXY_REPORT_URL === undefined)) {
    throw new ConfigError('invalid configuration: K8S_EGRESS_PROXY: needs EGRESS_PROXY_SECRET_FILE and K8S_EGRESS_PROXY_REPORT_URL (commands present tokens signed with the secret; reports come from the report port)');
  }
  if (cfg.K8S_EGRESS_PROXY === undefined && cfg.K8S_EGRESS_PROXY_REPORT_URL !== undefined) {
    throw new ConfigError('invalid configuration: K8S_EGRESS_PROXY_REPORT_URL: set K8S_EGRESS_PROXY too (the proxy it reports for)');
  }
  const teamsFile = cfg.TEAMS_FILE === undefined ? undefined : path.resolve(cfg.TEAMS_FILE);
  const access = teamsFile === undefined ? AccessConfig.parse({}) : readAccessConfig(teamsFile);
  // Workers open pull requests with it; the API looks up who may steer the agent from a comment.
  const githubAccess =
    cfg.ROLES.includes('worker') || (cfg.ROLES.includes('api') && (cfg.GITHUB_WEBHOOK_SECRET !== undefined || cfg.GITHUB_WEBHOOK_SECRET_FILE !== undefined)) ? loadGithubAccess(env, dataDir) : null;
  return {
    ...cfg,
    OIDC_CLIENT_SECRET: undefined,
    GITHUB_WEBHOOK_SECRET: undefined,
    // Only the API signs people in; a worker-only process needs none of the provider's settings or its secret.
    oidc: cfg.API_AUTH === 'oidc' && cfg.ROLES.includes('api') ? oidcSettings(cfg, dataDir) : null,
    access,
    // Only the API receives webhooks; a worker-only process needs neither the secret nor the planner.
    github: cfg.ROLES.includes('api') ? githubIntakeSettings(cfg, dataDir) : null,
    // Only workers deliver: an API-only process needs none of the secrets.
    webhookSecrets: cfg.ROLES.includes('worker') ? readWebhookSecrets(access, env) : {},
    githubAccess,
    githubGitBase: githubAccess !== null && cfg.ROLES.includes('worker') ? githubGitBase(cfg) : null,
    artifactStore: loadArtifactStoreSettings(env, dataDir),
    TEAMS_FILE: teamsFile,
    DATA_DIR: dataDir,
    EGRESS_PROXY_SECRET_FILE: secretFile,
    TEMPORAL_CLI_CACHE: path.resolve(cfg.TEMPORAL_CLI_CACHE),
    REPO_LOCAL_ROOTS: cfg.REPO_LOCAL_ROOTS.map((r) => path.resolve(r)),
    GIT_CREDENTIALS_FILE: credentials,
  };
}

/** The identity provider's settings for `API_AUTH=oidc`; throws a {@link ConfigError} naming a missing or bad variable. */
function oidcSettings(cfg: z.infer<typeof Config>, dataDir: string): OidcSettings {
  const bad = (name: string, why: string) => new ConfigError(`invalid configuration: ${name}: ${why}`);
  if (cfg.OIDC_ISSUER === undefined) throw bad('OIDC_ISSUER', 'required with API_AUTH=oidc (the identity provider people sign in at)');
  const issuer = new URL(cfg.OIDC_ISSUER);
  if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && isLoopbackHost(issuer.hostname))) throw bad('OIDC_ISSUER', 'must be an https URL (plain http only on loopback)');
  if (cfg.OIDC_CLIENT_ID === undefined) throw bad('OIDC_CLIENT_ID', 'required with API_AUTH=oidc');
  if (cfg.PUBLIC_URL === undefined) throw bad('PUBLIC_URL', 'required with API_AUTH=oidc: the redirect URI registered at the provider is PUBLIC_URL/login/callback');
  const own = new URL(cfg.PUBLIC_URL);
  if (own.protocol !== 'https:' && !(own.protocol === 'http:' && isLoopbackHost(own.hostname))) {
    throw bad('PUBLIC_URL', 'must be an https URL with API_AUTH=oidc (plain http only on loopback): the session cookie and the sign-in code would cross the network in the clear');
  }
  if (cfg.OIDC_CLIENT_SECRET !== undefined && cfg.OIDC_CLIENT_SECRET_FILE !== undefined) throw bad('OIDC_CLIENT_SECRET_FILE', 'set it or OIDC_CLIENT_SECRET, not both');
  let clientSecret = cfg.OIDC_CLIENT_SECRET;
  if (cfg.OIDC_CLIENT_SECRET_FILE !== undefined) {
    clientSecret = readSecretFile('OIDC_CLIENT_SECRET_FILE', cfg.OIDC_CLIENT_SECRET_FILE, dataDir, 1);
  }
  if (clientSecret === undefined) throw bad('OIDC_CLIENT_SECRET', 'required with API_AUTH=oidc (or OIDC_CLIENT_SECRET_FILE)');
  return {
    issuer: cfg.OIDC_ISSUER,
    clientId: cfg.OIDC_CLIENT_ID,
    clientSecret,
    audience: cfg.OIDC_AUDIENCE ?? cfg.OIDC_CLIENT_ID,
    scopes: cfg.OIDC_SCOPES,
    claims: {
      ...(cfg.OIDC_ROLE_CLAIM !== undefined ? { role: cfg.OIDC_ROLE_CLAIM } : {}),
      ...(cfg.OIDC_TEAMS_CLAIM !== undefined ? { teams: cfg.OIDC_TEAMS_CLAIM } : {}),
      ...(cfg.OIDC_GROUPS_CLAIM !== undefined ? { groups: cfg.OIDC_GROUPS_CLAIM } : {}),
    },
    redirectUri: `${cfg.PUBLIC_URL.replace(/\/+$/, '')}/login/callback`,
  };
}

/** The TEAMS_FILE at `file`, parsed and checked; throws a {@link ConfigError} naming the variable and each bad field. */
export function readAccessConfig(file: string): AccessConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new ConfigError(`invalid configuration: TEAMS_FILE: no file at ${file}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`invalid configuration: TEAMS_FILE: not YAML or JSON: ${(err as Error).message}`);
  }
  const parsed = AccessConfig.safeParse(raw ?? {});
  if (!parsed.success) {
    throw new ConfigError(`invalid configuration: TEAMS_FILE: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/**
 * The secret of every webhook TEAMS_FILE names (`secret_env`), from `env`; throws a {@link ConfigError} naming the
 * team, the webhook and the variable when one is unset or too short.
 */
export function readWebhookSecrets(access: AccessConfig, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [team, settings] of Object.entries(access.teams)) {
    settings.webhooks.forEach((hook, i) => {
      if (hook.secret_env === undefined) return;
      const secret = env[hook.secret_env] ?? '';
      if (secret.length < MIN_SECRET_CHARS) {
        throw new ConfigError(
          `invalid configuration: TEAMS_FILE: teams.${team}.webhooks.${i}.secret_env: ${hook.secret_env} must hold the webhook's secret, at least ${MIN_SECRET_CHARS} characters`,
        );
      }
      out[hook.secret_env] = secret;
    });
  }
  return out;
}

/** Environment variables of `cfg` that hold secrets (the OIDC client secret, GitHub's and the teams' webhook secrets), to drop once read. */
export function secretVariables(cfg: Config): string[] {
  return ['OIDC_CLIENT_SECRET', 'GITHUB_WEBHOOK_SECRET', ...Object.keys(cfg.webhookSecrets)];
}

/** Why `v` is not a report URL (an http(s) origin, no credentials, path or query), or null. */
function reportUrlError(v: string): string | null {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return 'not a URL (e.g. http://egress-proxy.agent-inbox:3129)';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'an http or https URL';
  if (u.username || u.password || u.search || u.hash || u.pathname !== '/') return 'the origin only (scheme, host, port): no credentials, path or query';
  return null;
}

/** The repository rules of this configuration: REPO_ALLOW, REPO_LOCAL_ROOTS, and DATA_DIR always refused. */
export function repoRulesOf(cfg: Config): RepoRules {
  // The artifact directory holds other tasks' checkpoint bundles and logs: never a repository a task may name.
  return { allow: cfg.REPO_ALLOW, localRoots: cfg.REPO_LOCAL_ROOTS, forbidden: [cfg.DATA_DIR, ...(cfg.artifactStore.kind === 'disk' ? [cfg.artifactStore.dir] : [])] };
}
