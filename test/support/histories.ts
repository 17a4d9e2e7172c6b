/**
 * Recorded workflow histories: the replay test runs them against the current
 * workflow code so a change cannot silently break tasks that are already running.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { REPO_ROOT } from './stack';

const History = temporal.api.history.v1.History;

/**
 * A history as readable JSON (enum names, 64-bit numbers as strings, bytes as base64).
 * Not the SDK's `historyToJSON`: with the protobufjs copies npm installs beside SDK 1.24 it throws "type must be a Type".
 */
export function historyToText(history: temporal.api.history.v1.IHistory): string {
  return JSON.stringify(History.toObject(History.fromObject(history), { longs: String, enums: String, bytes: String }), null, 1);
}

/** Reads back what {@link historyToText} wrote. */
export function historyFromText(text: string): temporal.api.history.v1.History {
  return History.fromObject(JSON.parse(text));
}

/** Where committed histories live (JSON, see historyToText). */
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
    fs.writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), historyToText(history));
  }
  return history;
}
