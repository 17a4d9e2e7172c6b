/**
 * The whole backend in one process: Temporal (external or an embedded dev server),
 * the task worker, the HTTP API and the sandbox reaper.
 */
import fs from 'node:fs/promises';
import type { Server } from 'node:http';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { WorkerPlacement } from '../activities/types';
import { workerPlacement } from './placement';
import { SandboxCapacity } from './capacity';
import { admissionQueue } from '../domain/queues';
import { githubForge } from '../activities/github/activities';
import { githubClients } from '../activities/github/client';
import { githubGitCredentials } from '../activities/github/git-credentials';
import { githubLookup } from '../activities/github/lookup';
import { S3ArtifactStore } from '../activities/artifacts/s3';
import { ArtifactStore, type ArtifactStorage } from '../activities/artifacts/store';
import { removeExpiredTasks } from '../activities/records/expiry';
import { TaskRecordStore } from '../activities/records/task-record';
import { EgressProxy } from '../activities/egress/proxy';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { createApp } from '../api/app';
import type { CredentialSource } from '../api/auth/context';
import { sameSecret, sha256 } from '../api/auth/digest';
import { ensureAdminToken, isLoopbackHost, localAdminSource, OneTimeLoginCodes } from '../api/auth/local-admin';
import { jwtSource } from '../api/auth/jwt';
import { discoverProvider, OidcSignIn } from '../api/auth/oidc';
import { ensureSessionSecret, Sessions, sessionSource } from '../api/auth/session';
import { githubGitBase as githubGitBaseOf } from './config-github';
import { EndedSessions } from '../api/auth/ended-sessions';
import type { SignInDeps } from '../api/routes/login';
import { ApiTokenStore, apiTokenSource } from '../api/auth/tokens';
import type { AppDeps } from '../api/deps';
import { createHealthApp, type ProcessHealth } from '../api/routes/health';
import { ALL_SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { ConfigError, repoRulesOf, type Config } from './config';
import type { Logger } from './log';
import { reapOrphanSandboxes } from './reaper';
import { createSandboxDriver, type SandboxInfo } from './sandbox';
import { ensureNamespaceRetention, ensureSearchAttributes, type RetentionStatus } from './namespace-setup';
import { connectTemporal } from './temporal-connection';
import { resolveTemporalCli, startDevServer, TemporalCliNotFoundError, type DevServer } from './temporal-server';
import { bundleWorkflows, createWorker, superviseWorker } from './worker';

/** A running backend; `stop()` shuts it down in reverse order and is safe to call twice. */
export interface Stack {
  /** Base URL of the HTTP API, or null when this process runs only a worker. */
  url: string | null;
  temporalAddress: string;
  client: Client;
  /** Resolves when a part that must keep running stops on its own (the worker's run loop); the process should then exit non-zero. */
  failure: Promise<Error>;
  /** Base URL of the health server of a process without the API role (`HEALTH_PORT`), else null. */
  healthUrl: string | null;
  /**
   * The local admin's credentials, when no identity provider is configured: the token in DATA_DIR/admin-token,
   * and a fresh one-time link to the web inbox per call (both null otherwise, or without the API role).
   */
  auth: { adminToken: string | null; loginLink(): string | null };
  stop(): Promise<void>;
}

const REAP_EVERY_MS = 5 * 60_000;
/** How often artifacts of tasks past their retention are looked for; retention is counted in days. */
const EXPIRE_EVERY_MS = 60 * 60_000;

/** Starts every part the configuration asks for and resolves once the API is listening. */
export async function startStack(cfg: Config, log: Logger): Promise<Stack> {
  const cleanups: (() => Promise<void>)[] = [];
  let stopRequested = false;
  const stop = async (): Promise<void> => {
    stopRequested = true;
    while (cleanups.length > 0) {
      const c = cleanups.pop()!;
      await c().catch((err: unknown) => log.error('shutdown step failed', { error: err }));
    }
  };
  try {
    const serveApi = cfg.ROLES.includes('api');
    // Without an identity provider the local admin token is the only credential: never serve it beyond this machine.
    if (serveApi && cfg.API_AUTH === 'local' && !isLoopbackHost(cfg.HOST)) {
      throw new ConfigError(
        `invalid configuration: HOST: ${cfg.HOST} is not a loopback address, and with API_AUTH=local (no identity provider: a local admin token) the API serves loopback only; set HOST=127.0.0.1, API_AUTH=tokens to admit API tokens only, or API_AUTH=oidc to sign people in at an identity provider`,
      );
    }
    await fs.mkdir(cfg.DATA_DIR, { recursive: true });
    const adminToken = serveApi && cfg.API_AUTH === 'local' ? await ensureAdminToken(cfg.DATA_DIR) : null;
    const loginCodes = adminToken === null ? undefined : new OneTimeLoginCodes();
    const sources: CredentialSource[] = [apiTokenSource(new ApiTokenStore(cfg.DATA_DIR))];
    let signIn: SignInDeps | undefined;
    const ownUrl = cfg.PUBLIC_URL ? { publicUrl: cfg.PUBLIC_URL } : {};
    const secure = cfg.PUBLIC_URL !== undefined && new URL(cfg.PUBLIC_URL).protocol === 'https:';
    if (adminToken !== null && loginCodes !== undefined) {
      sources.push(localAdminSource(adminToken));
      // Browser sessions: the web inbox signs in with the login link (or the token), then carries a cookie.
      const sessions = new Sessions(await ensureSessionSecret(cfg.DATA_DIR), { secure, realm: 'local', ended: EndedSessions.in(cfg.DATA_DIR) });
      sources.push(sessionSource(sessions));
      signIn = { sessions, local: { consumeLoginCode: (c) => loginCodes.consume(c), isAdminToken: (t) => sameSecret(t, adminToken) }, ...ownUrl };
    } else if (serveApi && cfg.oidc !== null) {
      // People sign in at the identity provider and then carry a session cookie; programs may send its JWTs.
      const provider = await discoverProvider(cfg.oidc).catch((err: unknown) => {
        throw new ConfigError(`invalid configuration: OIDC_ISSUER: cannot use ${cfg.oidc!.issuer} (its discovery document): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      });
      const metadata = provider.serverMetadata();
      if (metadata.jwks_uri === undefined) throw new ConfigError(`invalid configuration: OIDC_ISSUER: ${cfg.oidc.issuer} names no jwks_uri in its discovery document`);
      sources.push(jwtSource({ issuer: metadata.issuer, jwksUri: metadata.jwks_uri, audience: cfg.oidc.audience, claims: cfg.oidc.claims, access: cfg.access }));
      // Sessions of this provider and this mapping only: a local admin's cookie from API_AUTH=local, or one made
      // before TEAMS_FILE's people and groups changed, signs nobody in here.
      const realm = `oidc:${metadata.issuer}:${sha256(JSON.stringify([cfg.access.people, cfg.access.groups])).toString('hex')}`;
      const sessions = new Sessions(await ensureSessionSecret(cfg.DATA_DIR), { secure, realm, ended: EndedSessions.in(cfg.DATA_DIR) });
      sources.push(sessionSource(sessions));
      signIn = { sessions, oidc: new OidcSignIn(provider, cfg.oidc, sessions, cfg.access), ...ownUrl };
    }
    let address: string;
    const embedded = !cfg.TEMPORAL_ADDRESS;
    if (cfg.TEMPORAL_ADDRESS) {
      address = cfg.TEMPORAL_ADDRESS;
    } else {
      const server = await startEmbeddedTemporal(cfg, log);
      cleanups.push(() => server.stop());
      address = server.address;
    }
    const temporal = await connectTemporal(address);
    cleanups.push(() => temporal.close());
    const { connection } = temporal;
    await ensureSearchAttributes(connection, cfg.TEMPORAL_NAMESPACE, [...ALL_SEARCH_ATTRIBUTES]);
    // The embedded server is the backend's own; an external cluster's retention is its operator's unless they opt in.
    const retention: RetentionStatus = await ensureNamespaceRetention(connection, cfg.TEMPORAL_NAMESPACE, cfg.TASK_RETENTION_DAYS, {
      mode: embedded ? 'exact' : cfg.TEMPORAL_SET_RETENTION ? 'at-least' : 'check',
      log,
    });
    const client = new Client({ connection, namespace: cfg.TEMPORAL_NAMESPACE });

    const artifacts = await openArtifactStore(cfg, log, cleanups);
    const records = new TaskRecordStore(artifacts, log);
    let sandboxInfo: SandboxInfo | null = null;

    let workerState: (() => string) | null = null;
    let ownQueue: WorkerPlacement | null = null;
    let sandboxCapacity: SandboxCapacity | null = null;
    let failure: Promise<Error> = new Promise<Error>(() => undefined);
    if (cfg.ROLES.includes('worker')) {
      // The worker's egress proxy: it serves each networked gVisor sandbox on a listener only that sandbox reaches.
      const egress = new EgressProxy({ hosts: cfg.EGRESS_HOSTS, log });
      cleanups.push(async () => egress.stop());
      const chosen = await createSandboxDriver(cfg, log, process.env, egress);
      const sandbox = chosen.driver;
      // runsc keeps an empty network namespace mounted under DATA_DIR; let it go when no sandbox is left.
      if (sandbox instanceof GvisorSandboxDriver) cleanups.push(() => sandbox.releaseHost());
      sandboxInfo = chosen.info;
      if (sandboxInfo.warning) log.warn(`sandbox driver ${sandboxInfo.driver}: ${sandboxInfo.warning}`, { ...sandboxInfo });
      else log.info(`sandbox driver ${sandboxInfo.driver}`, { ...sandboxInfo });
      // One set of GitHub clients for the pull requests and the worker's git: installation look-ups and tokens are shared.
      const github = cfg.githubAccess === null ? null : githubClients(cfg.githubAccess, { log });
      const githubGit = github === null || cfg.githubGitBase === null ? {} : { credentials: githubGitCredentials(cfg.githubGitBase, github) };
      const placement = workerPlacement(cfg);
      // Tasks whose working copies are here already (a restart) hold their sandboxes still.
      const capacity = new SandboxCapacity(cfg.WORKER_MAX_SANDBOXES, (await listDir(path.join(cfg.DATA_DIR, 'workspaces'))).filter((n) => !n.startsWith('.')));
      const activities = createActivities({
        placement,
        holds: capacity,
        sandbox,
        artifacts,
        dataDir: cfg.DATA_DIR,
        log,
        repos: { rules: repoRulesOf(cfg), credentialsFile: cfg.GIT_CREDENTIALS_FILE, ...githubGit },
        prices: cfg.MODEL_PRICES,
        egressCeiling: cfg.EGRESS_ALLOW,
        notify: { access: cfg.access, secrets: cfg.webhookSecrets, publicUrl: cfg.PUBLIC_URL ?? null, log },
        forge: cfg.githubAccess === null || github === null ? null : githubForge(cfg.githubAccess, { publicUrl: cfg.PUBLIC_URL, log, clients: github }),
        setupCache:
          cfg.SETUP_CACHE_MB === 0
            ? null
            : { root: path.join(cfg.DATA_DIR, 'setup-cache'), maxBytes: cfg.SETUP_CACHE_MB * 2 ** 20, maxTotalBytes: cfg.SETUP_CACHE_TOTAL_MB * 2 ** 20 },
      });
      const nativeConnection = await NativeConnection.connect({ address });
      cleanups.push(() => nativeConnection.close());
      // Sandbox work of the tasks this worker provisions comes to its own queue: only it holds those sandboxes. It is made
      // first: sandbox work waiting for a restarted worker need not wait for the workflow bundle too.
      const own = await createWorker({
        connection: nativeConnection,
        namespace: cfg.TEMPORAL_NAMESPACE,
        taskQueue: placement.queue,
        activities,
      });
      // Tasks ask for a sandbox on the admission queue, which this worker polls only while it has room.
      const admission = await createWorker({
        connection: nativeConnection,
        namespace: cfg.TEMPORAL_NAMESPACE,
        taskQueue: admissionQueue(cfg.TEMPORAL_TASK_QUEUE),
        activities,
        ...(cfg.WORKER_MAX_SANDBOXES === 0 ? {} : { activitySlots: capacity.slotSupplier() }),
      });
      const w = await createWorker({
        connection: nativeConnection,
        namespace: cfg.TEMPORAL_NAMESPACE,
        taskQueue: cfg.TEMPORAL_TASK_QUEUE,
        activities,
        workflowBundle: await bundleWorkflows(),
        maxCachedWorkflows: cfg.WORKER_MAX_CACHED_WORKFLOWS,
      });
      const workers = [w, own, admission];
      const supervised = workers.map((x) => superviseWorker(x, { stopping: () => stopRequested }));
      workerState = () => {
        const states = new Set(workers.map((x) => x.getState()));
        return states.size === 1 ? [...states][0]! : workers.map((x) => x.getState()).join('/');
      };
      failure = Promise.race(supervised.map((x) => x.failed)).then((err) => {
        log.error('worker stopped with an error', { error: err, state: workerState?.() });
        return err;
      });
      cleanups.push(async () => {
        await Promise.all(supervised.map((x) => x.stop()));
      });
      ownQueue = placement;
      sandboxCapacity = capacity;

      const reap = (): void => {
        reapOrphanSandboxes({
          client,
          // Names starting with a dot are the repositories and half clones of the working copies, not tasks.
          // Admitted tasks are looked at too: one that ended before it provisioned here gives its place back.
          list: async () => [
            ...new Set([...(await sandbox.list()), ...(await listDir(path.join(cfg.DATA_DIR, 'workspaces'))).filter((n) => !n.startsWith('.')), ...capacity.holding()]),
          ],
          remove: (taskId) => activities.teardownSandbox({ task_id: taskId, sandbox: null }),
          log,
        }).catch((err: unknown) => log.warn('sandbox reaper pass failed', { error: err }));
      };
      reap();
      const timer = setInterval(reap, REAP_EVERY_MS);
      timer.unref();
      cleanups.push(async () => clearInterval(timer));

      // The worker holds the artifact volume, so it removes what outlived TASK_RETENTION_DAYS.
      const expire = (): void => {
        removeExpiredTasks({ records, retentionDays: cfg.TASK_RETENTION_DAYS, now: new Date(), log }).catch((err: unknown) =>
          log.warn('artifact retention pass failed', { error: err }),
        );
      };
      expire();
      const expiry = setInterval(expire, EXPIRE_EVERY_MS);
      expiry.unref();
      cleanups.push(async () => clearInterval(expiry));
    }

    const health = async (): Promise<ProcessHealth> => {
      const state = workerState?.() ?? null;
      return {
        fields: {
          sandbox: sandboxInfo ?? 'no worker in this process',
          isolation_warning: sandboxInfo?.warning,
          worker: state ?? 'not in this process',
          task_queue: cfg.TEMPORAL_TASK_QUEUE,
          ...(ownQueue === null
            ? {}
            : { worker_id: ownQueue.id, sandbox_queue: ownQueue.queue, sandbox_release_after_minutes: ownQueue.release_after_minutes }),
          ...(sandboxCapacity === null ? {} : { sandboxes: { live: sandboxCapacity.live, max: sandboxCapacity.max || null, peak: sandboxCapacity.peak } }),
          egress: { ceiling: cfg.EGRESS_ALLOW, operator_hosts: Object.keys(cfg.EGRESS_HOSTS), setup_cache: cfg.SETUP_CACHE_MB > 0 },
          retention: retention.warning
            ? { namespace_days: retention.namespace_days, task_retention_days: retention.wanted_days, warning: retention.warning }
            : { namespace_days: retention.namespace_days, task_retention_days: retention.wanted_days },
        },
        failing: state === null || state === 'RUNNING' ? [] : [`worker ${state}`],
      };
    };
    const appDeps: AppDeps = {
      client,
      taskQueue: cfg.TEMPORAL_TASK_QUEUE,
      namespace: cfg.TEMPORAL_NAMESPACE,
      log,
      auth: { sources, ...(loginCodes ? { loginCodes } : {}), ...(signIn ? { signIn } : {}) },
      access: cfg.access,
      ...(Object.keys(cfg.access.github.repos).length === 0 ? {} : { githubGitBase: githubGitBaseOf(cfg) }),
      ...(cfg.github === null ? {} : { github: cfg.github }),
      ...(cfg.github === null || cfg.githubAccess === null ? {} : { forgeLookup: githubLookup(cfg.githubAccess, { log }) }),
      repoRules: repoRulesOf(cfg),
      egressCeiling: cfg.EGRESS_ALLOW,
      prices: cfg.MODEL_PRICES,
      artifacts,
      records,
      maxBodyBytes: cfg.API_MAX_BODY_BYTES,
      health,
      web: {
        namespace: cfg.TEMPORAL_NAMESPACE,
        ...(cfg.TEMPORAL_UI_URL ? { temporalUiUrl: cfg.TEMPORAL_UI_URL } : embedded ? { temporalUiUrl: `http://127.0.0.1:${cfg.TEMPORAL_UI_PORT}` } : {}),
      },
    };

    if (!cfg.ROLES.includes('api')) {
      let healthUrl: string | null = null;
      if (cfg.HEALTH_PORT !== undefined) {
        const server = await listen(createHealthApp(appDeps), cfg.HEALTH_PORT, cfg.HOST);
        cleanups.push(() => closeServer(server));
        healthUrl = `http://${cfg.HOST}:${(server.address() as { port: number }).port}`;
      }
      log.info('agent inbox worker ready', { temporal: address, task_queue: cfg.TEMPORAL_TASK_QUEUE, data_dir: cfg.DATA_DIR, health: healthUrl });
      return { url: null, healthUrl, temporalAddress: address, client, failure, auth: { adminToken: null, loginLink: () => null }, stop };
    }
    const server = await listen(createApp(appDeps), cfg.PORT, cfg.HOST);
    cleanups.push(() => closeServer(server));
    const port = (server.address() as { port: number }).port;
    const url = `http://${cfg.HOST.includes(':') ? `[${cfg.HOST}]` : cfg.HOST}:${port}`;
    const publicUrl = (cfg.PUBLIC_URL ?? url).replace(/\/+$/, '');
    const loginLink = (): string | null => (loginCodes === undefined ? null : `${publicUrl}/login/local?code=${loginCodes.issue()}`);
    log.info('agent inbox backend ready', { url, temporal: address, namespace: cfg.TEMPORAL_NAMESPACE, data_dir: cfg.DATA_DIR });
    if (loginCodes !== undefined) {
      // The link is single-use and expires in 15 minutes; the admin token itself stays in its file.
      log.info(`login link: ${loginLink()}`, { admin_token_file: path.join(cfg.DATA_DIR, 'admin-token') });
    }
    return { url, healthUrl: null, temporalAddress: address, client, failure, auth: { adminToken, loginLink }, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The configured artifact store, the same one for the worker's activities and the API; a bucket is checked before anything uses it. */
async function openArtifactStore(cfg: Config, log: Logger, cleanups: (() => Promise<void>)[]): Promise<ArtifactStorage> {
  if (cfg.artifactStore.kind === 'disk') return new ArtifactStore(cfg.artifactStore.dir);
  const store = new S3ArtifactStore(cfg.artifactStore.s3);
  cleanups.push(async () => store.close());
  await store.check();
  log.info('artifact store: S3 bucket', { location: store.location });
  return store;
}

/** Starts `temporal server start-dev` on the SQLite file under DATA_DIR, or the SDK's own download as a last resort. */
async function startEmbeddedTemporal(cfg: Config, log: Logger): Promise<DevServer> {
  const dataDir = path.join(cfg.DATA_DIR, 'temporal');
  const port = cfg.TEMPORAL_PORT;
  try {
    const cli = await resolveTemporalCli({ cacheDir: cfg.TEMPORAL_CLI_CACHE, log });
    return await startDevServer({ cli, dataDir, namespace: cfg.TEMPORAL_NAMESPACE, port, uiPort: cfg.TEMPORAL_UI_PORT, log });
  } catch (err) {
    if (!(err instanceof TemporalCliNotFoundError)) throw err;
    log.warn('no Temporal CLI found locally; trying the SDK download', { tried: err.tried });
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    await fs.mkdir(dataDir, { recursive: true });
    try {
      const env = await TestWorkflowEnvironment.createLocal({
        server: {
          dbFilename: path.join(dataDir, 'temporal.sqlite'),
          namespace: cfg.TEMPORAL_NAMESPACE,
          ip: '127.0.0.1',
          port,
          executable: { type: 'cached-download', downloadDir: cfg.TEMPORAL_CLI_CACHE },
        },
      });
      return { address: env.address, namespace: cfg.TEMPORAL_NAMESPACE, stop: () => env.teardown() };
    } catch (downloadErr) {
      throw new Error(
        `cannot start Temporal: no CLI found (${err.tried.join('; ')}) and the SDK download failed (${String(downloadErr)}); set TEMPORAL_ADDRESS or TEMPORAL_CLI`,
        { cause: downloadErr },
      );
    }
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await fs.readdir(dir);
  } catch {
    return [];
  }
}

function listen(app: import('express').Express, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(server)));
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
