/**
 * The embedded dev server: the CLI is found or installed, search attributes are
 * registered idempotently, and open workflows survive a restart on the same data dir.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { createLogger } from '../workers/log';
import { ensureSearchAttributes, SearchAttributeConflictError } from '../workers/namespace-setup';
import { InvalidTemporalCliError, resolveTemporalCli, startDevServer, type DevServer } from '../workers/temporal-server';
import { REPO_ROOT } from './support/stack';

const CACHE_DIR = path.join(REPO_ROOT, '.cache', 'temporal');

// The same set the product registers, spelled out so this test pins the SQLite limits independently.
const STATE = defineSearchAttributeKey('AgentState', SearchAttributeType.KEYWORD);
const KEYS = [
  STATE,
  defineSearchAttributeKey('AgentRepo', SearchAttributeType.KEYWORD),
  defineSearchAttributeKey('AgentRequester', SearchAttributeType.KEYWORD),
  defineSearchAttributeKey('AgentItemKinds', SearchAttributeType.KEYWORD_LIST),
  defineSearchAttributeKey('AgentLabels', SearchAttributeType.KEYWORD_LIST),
  defineSearchAttributeKey('AgentPriority', SearchAttributeType.INT),
  defineSearchAttributeKey('AgentPendingItems', SearchAttributeType.INT),
  defineSearchAttributeKey('AgentWaitingSince', SearchAttributeType.DATETIME),
];

describe('the embedded Temporal dev server', () => {
  const log = createLogger({ level: 'warn', component: 'test-temporal-server' });
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'temporal-server-test-'));
  let cli: string;
  let server: DevServer | undefined;
  let connection: Connection | undefined;

  before(async () => {
    cli = await resolveTemporalCli({ cacheDir: CACHE_DIR, log });
  });
  after(async () => {
    await connection?.close();
    await server?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('rejects a TEMPORAL_CLI that does not exist, naming the variable', async () => {
    const missing = path.join(dataDir, 'no-such-temporal');
    await assert.rejects(
      resolveTemporalCli({ cacheDir: CACHE_DIR, env: { ...process.env, TEMPORAL_CLI: missing } }),
      (err: unknown) => err instanceof InvalidTemporalCliError && err.message.includes(`TEMPORAL_CLI=${missing}`),
    );
  });

  it('keeps an open workflow and the search attributes across a restart on the same data dir', async () => {
    server = await startDevServer({ cli, dataDir, uiPort: null, log });
    const port = Number(server.address.split(':').pop());
    connection = await Connection.connect({ address: server.address });
    await ensureSearchAttributes(connection, server.namespace, KEYS);
    await ensureSearchAttributes(connection, server.namespace, KEYS);

    const client = new Client({ connection, namespace: server.namespace });
    const workflowId = `restart-${process.pid}-${Date.now()}`;
    // Nobody polls this queue, so the workflow stays Running with only its start recorded.
    await client.workflow.start('NeverPolled', {
      taskQueue: `unpolled-${process.pid}`,
      workflowId,
      typedSearchAttributes: [{ key: STATE, value: 'working' }],
    });
    assert.equal((await client.workflow.getHandle(workflowId).describe()).status.name, 'RUNNING');

    await connection.close();
    connection = undefined;
    await server.stop();
    await server.stop();

    server = await startDevServer({ cli, dataDir, port, uiPort: null, log });
    connection = await Connection.connect({ address: server.address });
    const again = new Client({ connection, namespace: server.namespace });
    const described = await again.workflow.getHandle(workflowId).describe();
    assert.equal(described.status.name, 'RUNNING');
    assert.equal(described.typedSearchAttributes.get(STATE), 'working');

    const listed = await connection.operatorService.listSearchAttributes({ namespace: server.namespace });
    for (const key of KEYS) assert.ok(key.name in (listed.customAttributes ?? {}), `${key.name} still registered`);
    await ensureSearchAttributes(connection, server.namespace, KEYS);
  });

  it('refuses to re-register an existing search attribute with another type', async () => {
    assert.ok(server && connection, 'the previous test left a server running');
    await assert.rejects(
      ensureSearchAttributes(connection, server.namespace, [defineSearchAttributeKey('AgentPriority', SearchAttributeType.KEYWORD)]),
      SearchAttributeConflictError,
    );
  });
});
