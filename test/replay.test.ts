/**
 * Replays committed workflow histories against the current workflow code: a change
 * that would break tasks already running fails here instead of in production.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { WORKFLOWS_PATH } from '../workers/worker';
import { HISTORIES_DIR, historyFromText } from './support/histories';

it('replays every recorded task history without nondeterminism', async () => {
  const files = fs.readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 3, `recorded histories present in ${HISTORIES_DIR} (record with RECORD_HISTORIES=1 npm test)`);
  const histories = files.map((f) => ({
    workflowId: path.basename(f, '.json'),
    history: historyFromText(fs.readFileSync(path.join(HISTORIES_DIR, f), 'utf8')),
  }));
  let replayed = 0;
  for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, histories)) {
    assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    replayed += 1;
  }
  assert.equal(replayed, files.length);
});
