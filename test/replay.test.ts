/**
 * Replays committed workflow histories against the current workflow code: a change
 * that would break tasks already running fails here instead of in production.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { bundleWorkflows } from '../workers/worker';
import { HISTORIES_DIR, historyFromText } from './support/histories';

/** The recorded histories, each with its first run's input passed through `edit`. */
function recordedHistories(edit: (input: Record<string, unknown>) => Record<string, unknown> = (i) => i) {
  const files = fs.readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 3, `recorded histories present in ${HISTORIES_DIR} (record with RECORD_HISTORIES=1 npm test)`);
  return files.map((f) => {
    const json = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, f), 'utf8'));
    const payload = json.events[0].workflowExecutionStartedEventAttributes.input.payloads[0];
    payload.data = Buffer.from(JSON.stringify(edit(JSON.parse(Buffer.from(payload.data, 'base64').toString('utf8'))))).toString('base64');
    return { workflowId: path.basename(f, '.json'), history: historyFromText(JSON.stringify(json)) };
  });
}

it('replays every recorded task history without nondeterminism', async () => {
  await replayAll(recordedHistories());
});

it('replays them too when their input names an SLA and webhooks: a newer API started the task, an older worker ran it', async () => {
  await replayAll(recordedHistories((input) => ({ ...input, sla: { risky_action: 1_000, pr_review: 1_000, budget_request: 1_000 }, notify: ['item_opened', 'item_escalated', 'task_ended'] })));
});

it('replays them too when their task came from a GitHub issue: one an older worker ran opened no pull request', async () => {
  await replayAll(recordedHistories((input) => ({ ...input, source: input['source'] ?? { forge: 'github', repo: 'octo-org/hello', issue: 7, delivery_id: 'replayed' } })));
});

it('replays them too when their task came from a GitHub issue with merging on: one an older worker ran merges nothing', async () => {
  await replayAll(recordedHistories((input) => ({ ...input, source: { ...((input['source'] as object | undefined) ?? { forge: 'github', repo: 'octo-org/hello', issue: 7, delivery_id: 'replayed' }), merge_method: 'squash' } })));
});

/** The bundle workers run (with the modules their workflows share): every history replays in one context after the others. */
async function replayAll(histories: ReturnType<typeof recordedHistories>): Promise<void> {
  let replayed = 0;
  for await (const result of Worker.runReplayHistories({ workflowBundle: await bundleWorkflows() }, histories)) {
    assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    replayed += 1;
  }
  assert.equal(replayed, histories.length);
}
