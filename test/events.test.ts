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

/** An open SSE stream: the events read so far, and a way to wait for one. */
function listen(token: string, lastEventId?: string) {
  const controller = new AbortController();
  const events: { id: string; data: any }[] = [];
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
  const opened = fetch(`${base}/v1/events`, { headers, signal: controller.signal }).then(async (res) => {
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (id !== undefined && data !== undefined && /^event: task$/m.test(block)) events.push({ id, data: JSON.parse(data) });
        }
      }
    } catch {
      // Aborted by close().
    }
  });
  return {
    events,
    async waitFor(taskId: string, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const e = events.find((x) => x.data.task_id === taskId);
        if (e) return e;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`no event for ${taskId}; got ${JSON.stringify(events.map((e) => e.data.task_id))}`);
    },
    close: async () => {
      controller.abort();
      await opened.catch(() => undefined);
    },
  };
}

async function submit(token: string): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'events test', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }, { authorization: `Bearer ${token}` });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.task_id;
}

describe('live task events', () => {
  it('streams a new task to its team, not to another team, and catches up from Last-Event-ID', async () => {
    const red = listen(tokens.red!);
    const blue = listen(tokens.blue!);
    const admin = listen(stack.auth.adminToken!);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const redTask = await submit(tokens.red!);
      const e = await red.waitFor(redTask);
      assert.equal(e.data.team, 'red');
      assert.equal(e.data.state, 'queued');
      assert.equal(e.data.ended, false);
      await admin.waitFor(redTask);
      const blueTask = await submit(tokens.blue!);
      await blue.waitFor(blueTask);
      assert.equal(blue.events.some((x) => x.data.task_id === redTask), false, 'blue heard of a red task');
      assert.equal(red.events.some((x) => x.data.task_id === blueTask), false, 'red heard of a blue task');

      // Away, then back with the id of the last event seen: what changed meanwhile comes first.
      await red.close();
      const missed = await submit(tokens.red!);
      const back = listen(tokens.red!, e.id);
      try {
        await back.waitFor(missed);
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
