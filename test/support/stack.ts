/**
 * One real Temporal dev server per test file, and the backend started against it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ADMIN_TOKEN_FILE } from '../../api/auth/local-admin';
import { GvisorSandboxDriver } from '../../activities/sandbox/gvisor';
import { loadConfig } from '../../workers/config';
import { createLogger } from '../../workers/log';
import { resolveRunsc } from '../../workers/sandbox';
import { startStack, type Stack } from '../../workers/stack';
import { resolveTemporalCli, startDevServer, type DevServer } from '../../workers/temporal-server';
import { tempDir } from './git-fixture';
import { authorize } from './http';

/** Repository root, found from this file whether it runs from source or from `dist/`. */
export const REPO_ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');

/** Starts `temporal server start-dev` on a fresh SQLite file, as the product does. */
export async function startTestTemporal(extraArgs: string[] = []): Promise<DevServer> {
  const log = createLogger({ level: 'warn', component: 'test-temporal' });
  const cli = await resolveTemporalCli({ cacheDir: path.join(REPO_ROOT, '.cache', 'temporal'), log });
  return startDevServer({ cli, dataDir: tempDir('temporal'), uiPort: null, log, ...(extraArgs.length ? { extraArgs } : {}) });
}

/** Environment for a backend process or in-process stack talking to `temporal`. */
export function stackEnv(temporal: DevServer, dataDir: string, taskQueue: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: temporal.namespace,
    TEMPORAL_TASK_QUEUE: taskQueue,
    DATA_DIR: dataDir,
    PORT: '0',
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

/**
 * Starts the backend in this process (API, worker, reaper) against `temporal`. Its `stop` also removes
 * the gVisor sandboxes of tasks a test left open: in production they outlive the worker on purpose.
 */
export async function startTestStack(temporal: DevServer, dataDir: string, taskQueue: string, extra: Record<string, string> = {}): Promise<Stack> {
  const cfg = loadConfig(stackEnv(temporal, dataDir, taskQueue, extra));
  const stack = await startStack(cfg, createLogger({ level: 'warn', component: 'test-stack' }));
  if (stack.url !== null && stack.auth.adminToken !== null) authorize(stack.url, stack.auth.adminToken);
  return {
    ...stack,
    stop: async () => {
      await stack.stop();
      await removeSandboxes(dataDir);
    },
  };
}

/** The local admin token a backend process wrote to its data directory (for a backend a test spawns). */
export function adminTokenOf(dataDir: string): string {
  return fs.readFileSync(path.join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
}

/** Removes every gVisor sandbox under a data directory and what runsc keeps mounted there. */
export async function removeSandboxes(dataDir: string): Promise<void> {
  const runsc = await resolveRunsc();
  if (runsc === null) return;
  const quiet = createLogger({ level: 'error', component: 'test-cleanup' });
  const driver = new GvisorSandboxDriver({ root: path.join(dataDir, 'sandboxes'), runsc, log: quiet });
  for (const id of await driver.list()) {
    await driver.teardown({ id, driver: driver.name, isolation: driver.isolation, workdir: '/workspace', hostWorkdir: path.join(dataDir, 'workspaces', id) }).catch(() => undefined);
  }
  await driver.releaseHost();
}
