/**
 * What the HTTP API needs from the rest of the process, passed in by the entrypoint.
 */
import type { Client } from '@temporalio/client';
import type { PriceTable } from '../domain/prices';
import type { RepoRules } from '../domain/repo-policy';
import type { Logger } from '../workers/log';

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
  /** Which repositories tasks may name (REPO_ALLOW, REPO_LOCAL_ROOTS, DATA_DIR refused); see `repoRulesOf`. */
  repoRules: RepoRules;
  /** Model prices (built-in and MODEL_PRICES): an LLM task whose model is not in it is refused. */
  prices: PriceTable;
  artifacts?: ArtifactReader;
  /** Largest accepted JSON body; larger ones get 413. Defaults to 512 KiB. */
  maxBodyBytes?: number;
  /** Extra fields for `GET /healthz` (sandbox driver, worker state). */
  health?: () => Promise<Record<string, unknown>>;
}
