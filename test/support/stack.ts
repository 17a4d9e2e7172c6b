/**
 * One real Temporal dev server per test file, and the backend started against it.
 */
import path from 'node:path';
import { loadConfig } from '../../workers/config';
import { createLogger } from '../../workers/log';
import { startStack, type Stack } from '../../workers/stack';
import { resolveTemporalCli, startDevServer, type DevServer } from '../../workers/temporal-server';
import { tempDir } from './git-fixture';

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

/** Starts the backend in this process (API, worker, reaper) against `temporal`. */
export async function startTestStack(temporal: DevServer, dataDir: string, taskQueue: string, extra: Record<string, string> = {}): Promise<Stack> {
  const cfg = loadConfig(stackEnv(temporal, dataDir, taskQueue, extra));
  return startStack(cfg, createLogger({ level: 'warn', component: 'test-stack' }));
}
