/**
 * Notifications and escalation: a team's webhooks hear of items opened, items escalated and tasks ended,
 * as signed JSON and as Slack messages, delivered by abandoned child workflows that retry a receiver that
 * is down; an item pending past its team's SLA escalates (priority raised, overdue in the inbox). One dev
 * server, recipe tasks on the process driver, a loopback receiver.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { temporal as proto } from '@temporalio/proto';
import { ConfigError, loadConfig } from '../workers/config';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { recordHistory } from './support/histories';
import { call, eventually } from './support/http';
import { startScriptedServer, type RecordedRequest, type ScriptedServer } from './support/scripted-server';
import { stackEnv, startTestStack, startTestTemporal } from './support/stack';
import { taskApi } from './support/task-api';

const SECRET = 'red-webhook-secret-0123456789abcdef0123';
const EventType = proto.api.enums.v1.EventType;

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
let receiver: ScriptedServer<number>;
let teamsFile: string;
const opened: string[] = [];
const api = taskApi(() => base);

before(async () => {
  // Each scripted turn is the status of the next answer; 200 once the script is used up. `/moved` always redirects.
  receiver = await startScriptedServer<number>((req, res, next) => {
    if (req.path === '/moved') {
      res.writeHead(302, { location: `${receiver.url}/stolen` }).end();
      return;
    }
    res.writeHead(req.path === '/json' ? (next() ?? 200) : 200).end('ok');
  });
  temporal = await startTestTemporal();
  const root = tempDir('notify');
  origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
  teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(
    teamsFile,
    [
      'teams:',
      '  red:',
      '    sla: { risky_action: 2s }',
      '    webhooks:',
      `      - { url: "${receiver.url}/json", format: json, secret_env: RED_HOOK_SECRET }`,
      `      - { url: "${receiver.url}/slack", format: slack, events: [item_escalated] }`,
      `      - { url: "${receiver.url}/moved", format: json, secret_env: RED_HOOK_SECRET, events: [task_ended] }`,
      '  blue: {}',
      '',
    ].join('\n'),
  );
  stack = await startTestStack(temporal, path.join(root, 'data'), `notify-${process.pid}`, {
    TEAMS_FILE: teamsFile,
    RED_HOOK_SECRET: SECRET,
    SANDBOX_DRIVER: 'process',
    PUBLIC_URL: 'http://inbox.test',
  });
  base = stack.url!;
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await stack?.stop();
  await temporal?.stop();
  await receiver?.close();
});

/** A task of `team` held on a risky command, with its item. */
async function risky(team: string, goal: string, run = 'echo risky >> a.txt'): Promise<{ id: string; item: any }> {
  const res = await call(base, 'POST', '/v1/tasks', {
    repo: origin,
    goal,
    team,
    priority: 3,
    planner: { kind: 'recipe', steps: [{ run }] },
    policy: { approval_commands: ['^echo'] },
  });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  opened.push(res.body.task_id);
  return { id: res.body.task_id, item: await api.nextItem(res.body.task_id, ['risky_action']) };
}

/** The deliveries of `event` the receiver got at `at` so far. */
function received(at: string, event: string): RecordedRequest[] {
  return receiver.requests.filter((r) => r.path === at && r.headers['x-agent-inbox-event'] === event);
}

/** Timers of the team SLA's length (2 s; the task's other guards run for minutes). */
function slaTimers(events: proto.api.history.v1.IHistoryEvent[]): number[] {
  return events
    .filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)
    .map((e) => Number(String(e.timerStartedEventAttributes?.startToFireTimeout?.seconds ?? 0)))
    .filter((seconds) => seconds <= 2);
}

/** Checks a JSON delivery's signature as a receiver would: HMAC-SHA256 of `<t>.<raw body>`, fresh, compared in constant time. */
function assertSigned(r: RecordedRequest): void {
  const header = String(r.headers['x-agent-inbox-signature'] ?? '');
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  assert.ok(m, `signature header: ${header}`);
  assert.ok(Math.abs(Date.now() / 1000 - Number(m[1])) < 300, 'the timestamp is fresh');
  const want = crypto.createHmac('sha256', SECRET).update(`${m[1]}.${r.raw}`).digest();
  assert.ok(crypto.timingSafeEqual(want, Buffer.from(m[2]!, 'hex')), 'the signature covers the exact body');
  const forged = crypto.createHmac('sha256', SECRET).update(`${m[1]}.${r.raw.replace('red', 'blue')}`).digest();
  assert.ok(!crypto.timingSafeEqual(forged, Buffer.from(m[2]!, 'hex')), 'a changed body does not verify');
}

describe('webhooks and SLA escalation', () => {
  it('delivers signed notifications, retries a receiver that is down, and escalates an item past its SLA', async () => {
    receiver.script(503);
    // The goal is the submitter's, the command (and so the item's title) could be the model's: neither may ping or phish in Slack.
    const { id, item } = await risky('red', 'Tidy up <!channel> <http://phish.test|sign in here> & more', "echo '<!here> <http://phish.test|open>' >> a.txt");
    assert.match(item.title, /<!here>/);
    assert.ok(item.due_at, 'the item has a due time from the team SLA');
    assert.equal(Date.parse(item.due_at) - Date.parse(item.created_at), 2_000);

    // item_opened: the first attempt got 503, the retry went through with the same delivery id.
    const opens = await eventually(async () => received('/json', 'item_opened'), (r) => r.length >= 2, 'item_opened delivered after a retry', 30_000);
    assert.equal(opens[0]!.headers['x-agent-inbox-delivery'], opens[1]!.headers['x-agent-inbox-delivery']);
    for (const r of opens) assertSigned(r);
    const body = opens[1]!.body;
    assert.equal(body.event, 'item_opened');
    assert.equal(body.delivery_id, opens[1]!.headers['x-agent-inbox-delivery'], 'the delivery id is signed in the body');
    assert.equal(body.task_id, id);
    assert.equal(body.team, 'red');
    assert.equal(body.item.item_id, item.item_id);
    assert.equal(body.url, `http://inbox.test/tasks/${id}`);
    assert.equal(received('/slack', 'item_opened').length, 0, 'the Slack webhook wants escalations only');

    // Two seconds after it opened, the item escalates: priority 3 → 2, overdue in the inbox, both webhooks told.
    const [slack] = await eventually(async () => received('/slack', 'item_escalated'), (r) => r.length >= 1, 'item_escalated at the Slack webhook', 30_000);
    for (const text of [slack!.body.text, JSON.stringify(slack!.body.blocks)]) {
      assert.ok(!/<!(channel|here)>|<http:\/\/phish\.test\|/.test(text), `task text cannot mention a channel or forge a link: ${text}`);
    }
    assert.match(slack!.body.text, /&lt;!here&gt;/);
    assert.match(JSON.stringify(slack!.body.blocks), new RegExp(`<http://inbox.test/tasks/${id}\\|`));
    const [escalated] = await eventually(async () => received('/json', 'item_escalated'), (r) => r.length >= 1, 'item_escalated signed', 30_000);
    assertSigned(escalated!);
    assert.equal(escalated!.body.priority, 2);
    const inbox = await eventually(
      async () => (await call(base, 'GET', '/v1/inbox?team=red')).body.items.find((e: any) => e.item_id === item.item_id && e.task_id === id),
      (e) => e?.escalated_at != null && e.priority === 2,
      'the inbox shows the escalation',
    );
    assert.equal(inbox.overdue, true);
    assert.ok((await api.trace(id)).some((e) => e.type === 'item_escalated' && e.data.item_id === item.item_id));

    // task_ended reaches the JSON webhook; the one that redirects is not followed and gives up without retrying.
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/cancel`, { reason: 'done looking' })).status, 200);
    await api.ended(id);
    const [ended] = await eventually(async () => received('/json', 'task_ended'), (r) => r.length >= 1, 'task_ended delivered', 30_000);
    assert.equal(ended!.body.state, 'cancelled');
    assertSigned(ended!);
    const last = await stack.client.workflow.getHandle(`${id}.notify-3`).result();
    assert.equal(last.delivered.length, 1);
    assert.equal(last.failed.length, 1);
    assert.match(last.failed[0]!.error, /answered 302/);
    assert.equal(receiver.requests.filter((r) => r.path === '/moved').length, 1, 'a refusal is not retried');
    assert.equal(receiver.requests.filter((r) => r.path === '/stolen').length, 0, 'a redirect is not followed');
    for (const [method, route] of [['GET', ''], ['GET', '/trace'], ['POST', '/cancel']] as const) {
      const res = await call(base, method, `/v1/tasks/${id}.notify-1${route}`, method === 'POST' ? {} : undefined);
      assert.equal(res.status, 404, `a notification workflow is no task: ${method} ${route} ${JSON.stringify(res.body)}`);
    }

    const history = (await recordHistory(stack.client, id, 'recipe-sla-escalated-notified')) as { events?: proto.api.history.v1.IHistoryEvent[] };
    assert.equal(slaTimers(history.events ?? []).length, 1, 'the SLA is one durable timer');
    assert.ok(!JSON.stringify(history).includes(SECRET), 'no webhook secret reaches the workflow history');
  });

  it('starts no notification and no SLA timer for a team without webhooks or SLA', async () => {
    const { id } = await risky('blue', 'Touch a file quietly');
    assert.equal((await api.task(id)).items[0].due_at, undefined);
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/cancel`, { reason: 'over' })).status, 200);
    await api.ended(id);
    const events = (await stack.client.workflow.getHandle(id).fetchHistory()).events ?? [];
    assert.equal(events.filter((e) => e.eventType === EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED).length, 0);
    assert.deepEqual(slaTimers(events), [], 'no timer of an SLA');
  });

  it('refuses a TEAMS_FILE whose webhook secret is missing or whose SLA is not a duration, naming the field', () => {
    const env = (teams: string, extra: Record<string, string> = {}) => {
      const file = path.join(tempDir('notify-config'), 'teams.yaml');
      fs.writeFileSync(file, teams);
      return stackEnv(temporal, tempDir('notify-config-data'), 'unused', { TEAMS_FILE: file, ...extra });
    };
    assert.throws(
      () => loadConfig(env('teams:\n  red:\n    webhooks: [{ url: "http://127.0.0.1:9/x", format: json, secret_env: NOPE_SECRET }]\n')),
      (err: Error) => err instanceof ConfigError && /teams\.red\.webhooks\.0\.secret_env: NOPE_SECRET/.test(err.message),
    );
    assert.throws(
      () => loadConfig(env('teams:\n  red:\n    webhooks: [{ url: "http://127.0.0.1:9/x" }]\n')),
      (err: Error) => err instanceof ConfigError && /teams\.red\.webhooks\.0\.secret_env: a json webhook is signed/.test(err.message),
    );
    assert.throws(
      () => loadConfig(env('teams:\n  red:\n    sla: { risky_action: soon }\n')),
      (err: Error) => err instanceof ConfigError && /teams\.red\.sla\.risky_action: a duration/.test(err.message),
    );
    assert.throws(
      () => loadConfig(env('teams:\n  red:\n    webhooks: [{ url: "file:///etc/passwd", format: slack }]\n')),
      (err: Error) => err instanceof ConfigError && /teams\.red\.webhooks\.0\.url/.test(err.message),
    );
    assert.throws(
      () => loadConfig(env('teams:\n  red:\n    webhooks: [{ url: "https://user:pw@hooks.test/x", format: slack }]\n')),
      (err: Error) => err instanceof ConfigError && /webhooks\.0\.url: no credentials in the URL/.test(err.message),
    );
    assert.throws(
      () => loadConfig(env('teams:\n  red:\n    sla: { pr_review: 100000000000d }\n')),
      (err: Error) => err instanceof ConfigError && /sla\.pr_review: between 1s and 365d/.test(err.message),
    );
    // Only workers deliver, so an API-only process starts without the secrets.
    const unsigned = 'teams:\n  red:\n    webhooks: [{ url: "http://127.0.0.1:9/x", format: json, secret_env: NOPE_SECRET }]\n';
    assert.deepEqual(loadConfig(env(unsigned, { ROLES: 'api' })).webhookSecrets, {});
    const ok = loadConfig(env('teams:\n  red:\n    sla: { pr_review: 4h, clarification: 30m }\n'));
    assert.deepEqual(ok.access.teams.red!.sla, { pr_review: 4 * 3_600_000, clarification: 30 * 60_000 });
  });
});
