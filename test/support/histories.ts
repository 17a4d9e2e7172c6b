/**
 * Recorded workflow histories: the replay test runs them against the current
 * workflow code so a change cannot silently break tasks that are already running.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { REPO_ROOT } from './stack';

/** Where committed histories live (JSON, as `temporal workflow show --output json` writes them). */
export const HISTORIES_DIR = path.join(REPO_ROOT, 'test', 'histories');

/** Histories fetched in this process, for replaying at the end of a suite. */
export const recorded: { workflowId: string; history: Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>> }[] = [];

/**
 * Fetches a task's history; with RECORD_HISTORIES=1 it is saved under `test/histories/<name>.json`
 * to be committed. Returns the history either way.
 */
export async function recordHistory(client: Client, workflowId: string, name: string): Promise<unknown> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  recorded.push({ workflowId, history });
  if (process.env.RECORD_HISTORIES === '1') {
    fs.mkdirSync(HISTORIES_DIR, { recursive: true });
    // historyToJSON keeps the proto3 JSON form the SDK's replayer reads back.
    const { historyToJSON } = await import('@temporalio/common/lib/proto-utils');
    fs.writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), historyToJSON(history));
  }
  return history;
}
