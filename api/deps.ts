/**
 * What the HTTP API needs from the rest of the process, passed in by the entrypoint.
 */
import type { Client } from '@temporalio/client';
import type { AccessConfig } from '../domain/access';
import type { PriceTable } from '../domain/prices';
import type { RepoRules } from '../domain/repo-policy';
import type { TaskView, TraceEntry } from '../domain/task';
import type { Logger } from '../workers/log';
import type { CredentialSource } from './auth/context';
import type { ForgeLookup } from '../domain/forge-comments';
import type { GithubIntakeSettings } from './github/webhook';
import type { OneTimeLoginCodes } from './auth/local-admin';
import type { SignInDeps } from './routes/login';
import type { ProcessHealth } from './routes/health';
import type { WebOptions } from './web';

/** Read access to the artifact store; rejects with an `ArtifactNotFoundError` (or ENOENT) for a missing artifact. */
export interface ArtifactReader {
  readByName(taskId: string, name: string): Promise<Buffer>;
}

/** Everything `createApp` wires into the routes; building the app with these has no side effects. */
export interface AppDeps {
  client: Client;
  taskQueue: string;
  namespace: string;
  log: Logger;
  /** How `/v1` callers prove who they are: sources asked in order; the login codes only without an identity provider. */
  /** Credential sources in order; with `signIn`, browser sessions (cookie + CSRF) and the sign-in routes too. */
  auth: { sources: CredentialSource[]; loginCodes?: OneTimeLoginCodes; signIn?: SignInDeps };
  /** The operator's teams and team settings (TEAMS_FILE); default: none. */
  access?: AccessConfig;
  /** GITHUB_GIT_BASE, checked: a task on a repository under it that TEAMS_FILE maps to a team must be that team's. */
  githubGitBase?: string;
  /** GitHub intake (`POST /v1/webhooks/github`); absent: that route answers 404. */
  github?: GithubIntakeSettings;
  /** GitHub look-ups for comments that speak to the agent (who may steer it, which branch a pull request is from); absent without GitHub access: such comments are ignored. */
  forgeLookup?: ForgeLookup;
  /** Which repositories tasks may name (REPO_ALLOW, REPO_LOCAL_ROOTS, DATA_DIR refused); see `repoRulesOf`. */
  repoRules: RepoRules;
  /** The operator's egress ceiling (EGRESS_ALLOW): a task naming a domain outside it is refused at intake. Default: empty. */
  egressCeiling?: readonly string[];
  /** Model prices (built-in and MODEL_PRICES): an LLM task whose model is not in it is refused. */
  prices: PriceTable;
  artifacts?: ArtifactReader;
  /** Largest accepted JSON body; larger ones get 413. Defaults to 512 KiB. */
  maxBodyBytes?: number;
  /** What this process adds to `GET /healthz` and `GET /livez` (sandbox driver, worker state, retention). */
  health?: () => Promise<ProcessHealth>;
  /** Final records of ended tasks, read when Temporal no longer knows a task. */
  records?: TaskRecordReader;
  /** The web inbox at `/`: where it is built and the Temporal UI it links to. */
  web?: WebOptions;
}

/** An ended task as its final record keeps it. */
export interface EndedTask {
  task_id: string;
  ended_at: string;
  view: TaskView;
}

/** Where a listing of ended tasks goes on from. */
export interface EndedCursor {
  ended_at: string;
  task_id: string;
}

/** Read access to the final records ended tasks leave in the artifact store. */
export interface TaskRecordReader {
  /** The task's record, or null when it has none. */
  read(taskId: string): Promise<EndedTask | null>;
  /** The task's complete trace from its record, or null when it has none. */
  trace(taskId: string): Promise<TraceEntry[] | null>;
  /** Records newest end first, after `after`, that `match`; `next` is null on the last page. */
  page(opts: { after?: EndedCursor; limit: number; match?: (record: EndedTask) => boolean }): Promise<{ records: EndedTask[]; next: EndedCursor | null }>;
}
