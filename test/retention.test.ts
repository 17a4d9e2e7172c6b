/**
 * Temporal's retention of ended workflows follows TASK_RETENTION_DAYS on the embedded server, and an external
 * cluster's is left alone (with a warning in the log and `/healthz`) unless the operator opts in.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Connection } from '@temporalio/client';
import { loadConfig } from '../workers/config';
import { createLogger } from '../workers/log';
import { startStack, type Stack } from '../workers/stack';
import { namespaceRetentionSeconds } from '../workers/namespace-setup';
import type { DevServer } from '../workers/temporal-server';
import { tempDir } from './support/git-fixture';
import { call, freePort } from './support/http';
import { REPO_ROOT, stackEnv, startTestTemporal } from './support/stack';

const DAY_SECONDS = 24 * 60 * 60;
const log = createLogger({ level: 'error', component: 'test-retention' });


/** The namespace's retention in days, read from the frontend at `address`. */
async function retentionDays(address: string, namespace: string): Promise<number> {
  const connection = await Connection.connect({ address });
  try {
    return (await namespaceRetentionSeconds(connection, namespace)) / DAY_SECONDS;
  } finally {
    await connection.close();
  }
}

describe('the embedded Temporal server', () => {
  it('keeps ended workflows for TASK_RETENTION_DAYS after startup on a fresh data directory, and again after a restart', async () => {
    const dataDir = tempDir('retention-embedded');
    const env = async (): Promise<Record<string, string>> => ({
      DATA_DIR: dataDir,
      ROLES: 'api',
      PORT: '0',
      LOG_LEVEL: 'error',
      TASK_RETENTION_DAYS: '12',
      TEMPORAL_PORT: String(await freePort()),
      TEMPORAL_UI_PORT: String(await freePort()),
      TEMPORAL_CLI_CACHE: path.join(REPO_ROOT, '.cache', 'temporal'),
    });
    let stack: Stack = await startStack(loadConfig(await env()), log);
    try {
      assert.equal(await retentionDays(stack.temporalAddress, 'default'), 12);
      const health = await call(stack.url!, 'GET', '/healthz');
      assert.deepEqual(health.body.retention, { namespace_days: 12, task_retention_days: 12 });
    } finally {
      await stack.stop();
    }
    stack = await startStack(loadConfig(await env()), log);
    try {
      assert.equal(await retentionDays(stack.temporalAddress, 'default'), 12);
    } finally {
      await stack.stop();
    }
  });
});

describe('an external Temporal cluster', () => {
  let temporal: DevServer;
  const stacks: Stack[] = [];

  before(async () => {
    temporal = await startTestTemporal();
  });
  after(async () => {
    for (const s of stacks) await s.stop();
    await temporal?.stop();
  });

  it('keeps its shorter retention, and says so in /healthz, by default', async () => {
    const before = await retentionDays(temporal.address, temporal.namespace);
    assert.equal(before, 1, 'the dev server starts namespaces at 24 hours');
    const stack = await startStack(loadConfig({ ...stackEnv(temporal, tempDir('retention-ext'), 'retention-ext'), ROLES: 'api' }), log);
    stacks.push(stack);
    assert.equal(await retentionDays(temporal.address, temporal.namespace), 1);
    const health = await call(stack.url!, 'GET', '/healthz');
    assert.equal(health.status, 200, 'a short retention is a warning, not an outage');
    assert.equal(health.body.retention.namespace_days, 1);
    assert.equal(health.body.retention.task_retention_days, 30);
    assert.match(health.body.retention.warning, /less than TASK_RETENTION_DAYS=30/);
  });

  it('raises it to TASK_RETENTION_DAYS when TEMPORAL_SET_RETENTION is true', async () => {
    const env = { ...stackEnv(temporal, tempDir('retention-set'), 'retention-set'), ROLES: 'api', TEMPORAL_SET_RETENTION: 'true', TASK_RETENTION_DAYS: '45' };
    const stack = await startStack(loadConfig(env), log);
    stacks.push(stack);
    assert.equal(await retentionDays(temporal.address, temporal.namespace), 45);
    const health = await call(stack.url!, 'GET', '/healthz');
    assert.deepEqual(health.body.retention, { namespace_days: 45, task_retention_days: 45 });
  });
});
