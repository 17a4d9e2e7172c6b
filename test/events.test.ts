/**
 * `GET /v1/events`: a live client hears of a task it may see as it changes, never of another team's; one that
 * reconnects with `Last-Event-ID` first gets what changed while it was away. API role only: tasks stay queued.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiTokenStore } from '../api/auth/tokens';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { call } from './support/http';
import { listenEvents } from './support/sse';
import { startTestStack, startTestTemporal } from './support/stack';

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
const tokens: Record<string, string> = {};

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('events');
  const dataDir = path.join(root, 'data');
  origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
  const teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(teamsFile, 'teams:\n  red: {}\n  blue: {}\n');
  stack = await startTestStack(temporal, dataDir, `events-${process.pid}`, { ROLES: 'api', TEAMS_FILE: teamsFile });
  base = stack.url!;
  const store = new ApiTokenStore(dataDir);
  for (const [who, team] of [['red', 'red'], ['blue', 'blue']] as const) {
    tokens[who] = store.create({ name: `${who}-submitter`, role: 'submitter', teams: [team] }).token;
  }
});

after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

async function submit(token: string): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'events test', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }, { authorization: `Bearer ${token}` });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.task_id;
}

describe('live task events', () => {
  it('streams a new task to its team, not to another team, and catches up from Last-Event-ID', async () => {
    const red = listenEvents(base, tokens.red!);
    const blue = listenEvents(base, tokens.blue!);
    const admin = listenEvents(base, stack.auth.adminToken!);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const redTask = await submit(tokens.red!);
      const e = await red.waitFor((x) => x.data.task_id === redTask, redTask);
      assert.equal(red.status(), 200);
      assert.match(red.contentType(), /^text\/event-stream/);
      assert.equal(e.data.team, 'red');
      assert.equal(e.data.state, 'queued');
      assert.equal(e.data.ended, false);
      await admin.waitFor((x) => x.data.task_id === redTask, redTask);
      const blueTask = await submit(tokens.blue!);
      await blue.waitFor((x) => x.data.task_id === blueTask, blueTask);
      assert.equal(blue.events.some((x) => x.data.task_id === redTask), false, 'blue heard of a red task');
      assert.equal(red.events.some((x) => x.data.task_id === blueTask), false, 'red heard of a blue task');

      // Away, then back with the id of the last event seen: what changed meanwhile comes first.
      await red.close();
      const missed = await submit(tokens.red!);
      const back = listenEvents(base, tokens.red!, e.id);
      try {
        await back.waitFor((x) => x.data.task_id === missed, missed);
        assert.equal(back.events.some((x) => x.data.task_id === blueTask), false);
      } finally {
        await back.close();
      }
      // The diff of another team's item is as closed as the task itself.
      const diff = await call(base, 'GET', `/v1/tasks/${blueTask}/inbox/pr_review-1/diff`, undefined, { authorization: `Bearer ${tokens.red}` });
      assert.equal(diff.status, 403, JSON.stringify(diff.body));
      const unauthenticated = await fetch(`${base}/v1/events`);
      assert.equal(unauthenticated.status, 401);
      await unauthenticated.body?.cancel();
    } finally {
      await Promise.all([red.close(), blue.close(), admin.close()]);
    }
  });
});
