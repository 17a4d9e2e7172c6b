/**
 * Who may do what over the HTTP API: 401 without a credential, 403 for the wrong role or team, team isolation in
 * listings and the inbox, separation of duties, grant ceilings, the actor and requester taken from the identity,
 * API tokens revoked without a restart, and the local admin's safe defaults. One dev server, recipe tasks only.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { ensureAdminToken, OneTimeLoginCodes } from '../api/auth/local-admin';
import { decideUpdate } from '../workflows/messages';
import { ApiTokenStore } from '../api/auth/tokens';
import { BUILTIN_GRANT_CEILING } from '../domain/access';
import { ConfigError, loadConfig } from '../workers/config';
import { createLogger } from '../workers/log';
import { startStack, type Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { runTokensCli } from '../workers/tokens-cli';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { stackEnv, startTestStack, startTestTemporal } from './support/stack';
import { taskApi } from './support/task-api';

const execFileAsync = promisify(execFile);
/** Processes creating tokens at once, and tokens each, in the store race. */
const RACE_PROCESSES = 6;
const RACE_TOKENS_EACH = 5;

let temporal: DevServer;
let stack: Stack;
let base: string;
let dataDir: string;
let origin: string;
const opened: string[] = [];

/** One token per role and team; `both` submits for red and blue. */
const tokens: Record<string, { token: string; subject: string }> = {};
const as = (who: string): Record<string, string> => ({ authorization: `Bearer ${tokens[who]!.token}` });
const api = taskApi(() => base);

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('access');
  dataDir = path.join(root, 'data');
  origin = makeOriginRepo(root, { 'README.md': '# fixture\n' });
  const teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(teamsFile, 'default_grant_ceiling:\n  max_steps: 4\nteams:\n  red:\n    separation_of_duties: true\n    grant_ceiling:\n      max_steps: 3\n  blue: {}\n');
  stack = await startTestStack(temporal, dataDir, `access-${process.pid}`, { TEAMS_FILE: teamsFile, SANDBOX_DRIVER: 'process' });
  base = stack.url!;
  const store = new ApiTokenStore(dataDir);
  const make = (who: string, role: 'viewer' | 'submitter' | 'approver' | 'admin', teams: string[]): void => {
    const { token, record } = store.create({ name: who, role, teams });
    tokens[who] = { token, subject: `token:${record.id}` };
  };
  make('viewer-red', 'viewer', ['red']);
  make('submitter-red', 'submitter', ['red']);
  make('approver-red', 'approver', ['red']);
  make('submitter-blue', 'submitter', ['blue']);
  make('approver-blue', 'approver', ['blue']);
  make('both', 'submitter', ['red', 'blue']);
  make('nobody', 'submitter', []);
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await stack?.stop();
  await temporal?.stop();
});

/** Submits a recipe task as `who` and returns its id. */
async function submit(who: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Touch a file', planner: { kind: 'recipe', steps: [{ run: 'echo one >> a.txt' }] }, ...body }, as(who));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  opened.push(res.body.task_id);
  return res.body.task_id;
}

/** A task of `who` held on a risky command. */
async function risky(who: string, extra: Record<string, unknown> = {}): Promise<{ id: string; item: any }> {
  const id = await submit(who, { planner: { kind: 'recipe', steps: [{ run: 'echo risky >> a.txt' }] }, policy: { approval_commands: ['^echo risky'] }, ...extra });
  return { id, item: await api.nextItem(id, ['risky_action']) };
}

describe('authentication', () => {
  it('answers every /v1 route 401 with a Bearer challenge without a credential or with a bad one, and leaves /healthz open', async () => {
    const { id, item } = await risky('submitter-red');
    const routes: [string, string, unknown?][] = [
      ['GET', '/v1/tasks'],
      ['POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }],
      ['GET', `/v1/tasks/${id}`],
      ['GET', `/v1/tasks/${id}/trace`],
      ['GET', `/v1/tasks/${id}/artifacts/trace.jsonl`],
      ['POST', `/v1/tasks/${id}/cancel`, {}],
      ['POST', `/v1/tasks/${id}/messages`, { text: 'hi' }],
      ['POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' }],
      ['GET', '/v1/inbox'],
      ['GET', '/v1/no-such-route'],
    ];
    const bad = ['', 'Bearer ait_0123456789abcdef_' + 'A'.repeat(43), `Bearer ${tokens['approver-red']!.token.slice(0, -1)}x`, `Bearer aia_${'B'.repeat(43)}`, 'Bearer nonsense', 'Basic YTpi'];
    for (const [method, route, body] of routes) {
      for (const authorization of bad) {
        const res = await call(base, method, route, body, { authorization });
        assert.equal(res.status, 401, `${method} ${route} with ${JSON.stringify(authorization)}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'unauthenticated');
        assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      }
    }
    assert.equal((await call(base, 'GET', '/healthz', undefined, { authorization: '' })).status, 200);
    assert.equal((await api.task(id)).state, 'awaiting_approval', 'nothing an unauthenticated caller sent reached the task');
  });

  it('refuses a revoked API token on the next request, without a restart', async () => {
    const store = new ApiTokenStore(dataDir);
    const { token, record } = store.create({ name: 'short-lived', role: 'viewer', teams: ['red'] });
    assert.equal((await call(base, 'GET', '/v1/tasks', undefined, { authorization: `Bearer ${token}` })).status, 200);
    const lines: string[] = [];
    runTokensCli(['revoke', record.id], new ApiTokenStore(dataDir), { stdout: (s) => lines.push(s), stderr: (s) => lines.push(s) });
    assert.match(lines.join(''), /revoked API token/);
    const res = await call(base, 'GET', '/v1/tasks', undefined, { authorization: `Bearer ${token}` });
    assert.equal(res.status, 401, JSON.stringify(res.body));
  });

  it('keeps API tokens hashed in a 0600 file, and the CLI shows a new token once', () => {
    const dir = tempDir('access-cli');
    const out: string[] = [];
    const err: string[] = [];
    runTokensCli(['create', '--name', 'ci', '--role', 'submitter', '--team', 'red', '--team', 'blue'], new ApiTokenStore(dir), { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
    const token = out.join('').trim();
    assert.match(token, /^ait_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const file = path.join(dir, 'api-tokens.json');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    // The secret is base64url, so it may itself hold '_': take everything after the id.
    const secret = token.replace(/^ait_[0-9a-f]{16}_/, '');
    assert.ok(!fs.readFileSync(file, 'utf8').includes(secret), 'the secret is not stored');
    const listed: string[] = [];
    runTokensCli(['list'], new ApiTokenStore(dir), { stdout: (s) => listed.push(s), stderr: () => undefined });
    assert.match(listed.join(''), /\tci\tsubmitter\tred,blue\t.*\tactive/);
    assert.ok(!listed.join('').includes(token));
    assert.equal(new ApiTokenStore(dir).verify(token)?.name, 'ci');
    assert.throws(() => runTokensCli(['create', '--name', 'x', '--role', 'root'], new ApiTokenStore(dir), { stdout: () => undefined, stderr: () => undefined }), /--role/);
  });

  it('loses no token when several processes change the store at once', async () => {
    const dir = tempDir('access-race');
    const store = require.resolve('../api/auth/tokens');
    const script = `const { ApiTokenStore } = require(${JSON.stringify(store)}); const s = new ApiTokenStore(${JSON.stringify(dir)}); for (let i = 0; i < ${RACE_TOKENS_EACH}; i++) s.create({ name: 'p' + process.pid + '-' + i, role: 'viewer', teams: [] });`;
    const runs = Array.from({ length: RACE_PROCESSES }, () => execFileAsync(process.execPath, ['-e', script]));
    await Promise.all(runs);
    assert.equal(new ApiTokenStore(dir).list().length, RACE_PROCESSES * RACE_TOKENS_EACH);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['api-tokens.json'], 'no lock or temporary file is left behind');
  });
});

describe('roles and teams', () => {
  it('answers 403 for the wrong role or another team on every task route', async () => {
    const red = await risky('submitter-red');
    const blue = await risky('submitter-blue');
    const matrix: [string, string, string, unknown, number][] = [
      // who, method, route, body, status
      ['viewer-red', 'GET', `/v1/tasks/${red.id}`, undefined, 200],
      ['viewer-red', 'GET', `/v1/tasks/${red.id}/trace`, undefined, 200],
      ['viewer-red', 'GET', `/v1/tasks/${blue.id}`, undefined, 403],
      ['viewer-red', 'GET', `/v1/tasks/${blue.id}/trace`, undefined, 403],
      ['viewer-red', 'GET', `/v1/tasks/${blue.id}/artifacts/trace.jsonl`, undefined, 403],
      ['viewer-red', 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }, 403],
      ['viewer-red', 'POST', `/v1/tasks/${red.id}/messages`, { text: 'hi' }, 403],
      ['viewer-red', 'POST', `/v1/tasks/${red.id}/cancel`, {}, 403],
      ['viewer-red', 'POST', `/v1/tasks/${red.id}/inbox/${red.item.item_id}`, { action: 'approve' }, 403],
      ['submitter-red', 'POST', `/v1/tasks/${red.id}/inbox/${red.item.item_id}`, { action: 'approve' }, 403],
      ['submitter-red', 'POST', `/v1/tasks/${blue.id}/messages`, { text: 'hi' }, 403],
      ['submitter-blue', 'POST', `/v1/tasks/${red.id}/cancel`, {}, 403],
      ['approver-blue', 'POST', `/v1/tasks/${red.id}/inbox/${red.item.item_id}`, { action: 'approve' }, 403],
      ['approver-blue', 'POST', `/v1/tasks/${red.id}/cancel`, {}, 403],
      ['approver-red', 'POST', `/v1/tasks/${blue.id}/inbox/${blue.item.item_id}`, { action: 'reject' }, 403],
      ['approver-red', 'GET', `/v1/tasks/${blue.id}`, undefined, 403],
      ['submitter-red', 'POST', `/v1/tasks/${red.id}/messages`, { text: 'from the requester' }, 200],
    ];
    for (const [who, method, route, body, status] of matrix) {
      const res = await call(base, method, route, body, as(who));
      assert.equal(res.status, status, `${who} ${method} ${route}: ${JSON.stringify(res.body)}`);
      if (status === 403) assert.equal(res.body.error.code, 'forbidden');
    }
    assert.equal((await api.task(red.id)).items.find((i: any) => i.item_id === red.item.item_id).status, 'pending', 'no refused decision reached the task');
    // The requester may cancel their own task; an approver of the team may cancel any of its tasks.
    assert.equal((await call(base, 'POST', `/v1/tasks/${red.id}/cancel`, { reason: 'mine' }, as('submitter-red'))).status, 200);
    assert.equal((await call(base, 'POST', `/v1/tasks/${blue.id}/cancel`, {}, as('approver-blue'))).status, 200);
    const ended = await api.ended(red.id);
    assert.equal(ended.state, 'cancelled');
    assert.match(ended.result, /cancelled by submitter-red: mine/);
  });

  it('lets only an approver retry a health alert by message: the requester\'s message is refused and settles nothing', async () => {
    const id = await submit('submitter-red', { planner: { kind: 'recipe', steps: [{ run: 'echo broken >&2; exit 3' }] } });
    const alert = await api.nextItem(id, ['health_alert']);
    const refused = await call(base, 'POST', `/v1/tasks/${id}/messages`, { text: 'just retry' }, as('submitter-red'));
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, 'needs_approver');
    const after = await api.task(id);
    assert.equal(after.items.find((i: any) => i.item_id === alert.item_id).status, 'pending', 'the alert still waits for an approver');
    const traced = await call(base, 'GET', `/v1/tasks/${id}/trace`, undefined, as('approver-red'));
    assert.equal(traced.status, 200);
    assert.equal(traced.body.entries.some((e: any) => e.kind === 'message'), false, 'the refused message is not in the trace');
    const ok = await call(base, 'POST', `/v1/tasks/${id}/messages`, { text: 'retry, the fix is in' }, as('approver-red'));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.item?.item_id, alert.item_id, 'the approver\'s message settles the alert');
    await call(base, 'POST', `/v1/tasks/${id}/cancel`, {}, as('approver-red'));
  });

  it('lists and shows in the inbox only the tasks of the caller\'s teams; tasks of no team are for admins', async () => {
    const red = await risky('submitter-red', { labels: ['iso'] });
    const blue = await risky('submitter-blue', { labels: ['iso'] });
    const ids = (rows: any[]) => rows.map((r) => r.task_id).filter((i) => i === red.id || i === blue.id).sort();
    const seen = async (who: string | null, route: string) => {
      const res = await call(base, 'GET', route, undefined, who === null ? {} : as(who));
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return ids(route.startsWith('/v1/inbox') ? res.body.items : res.body.tasks);
    };
    await eventually(() => seen(null, '/v1/inbox?label=iso'), (v) => v.length === 2, 'both items in the admin inbox');
    assert.deepEqual(await seen('viewer-red', '/v1/inbox?label=iso'), [red.id]);
    assert.deepEqual(await seen('approver-blue', '/v1/inbox'), [blue.id]);
    assert.deepEqual(await seen('viewer-red', '/v1/tasks?label=iso'), [red.id]);
    assert.deepEqual(await seen('viewer-red', '/v1/tasks?label=iso&include_ended=true'), [red.id]);
    assert.deepEqual(await seen('viewer-red', '/v1/tasks?team=blue'), []);
    assert.deepEqual(await seen('viewer-red', '/v1/inbox?team=blue'), []);
    assert.deepEqual(await seen('both', '/v1/tasks?label=iso'), [red.id, blue.id].sort());
    assert.deepEqual(await seen('nobody', '/v1/inbox'), []);
    assert.deepEqual(await seen(null, '/v1/tasks?label=iso&team=blue'), [blue.id]);
    const entry = (await call(base, 'GET', '/v1/inbox?label=iso&team=red')).body.items.find((i: any) => i.task_id === red.id);
    assert.equal(entry.team, 'red');
    assert.deepEqual(entry.labels, ['iso']);
    assert.equal(entry.overdue, false);
    assert.equal(entry.due_at, null);
    assert.deepEqual(await seen(null, '/v1/inbox?label=iso&older_than_minutes=60'), [], 'neither item has waited an hour');
  });
});

describe('intake', () => {
  it('takes the requester from the identity and the team from its memberships', async () => {
    const id = await submit('submitter-red', { requester: 'cto@example.com' });
    const t = await api.task(id);
    assert.equal(t.spec.requester, tokens['submitter-red']!.subject);
    assert.equal(t.spec.team, 'red');
    const created = (await api.trace(id)).find((e) => e.type === 'created');
    assert.equal(created.data.requested_by.subject, tokens['submitter-red']!.subject);
    assert.equal(created.data.requested_by.team, 'red');
    assert.equal(created.data.requested_by.via, `api_token:${tokens['submitter-red']!.subject.slice('token:'.length)}`);

    const several = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }, as('both'));
    assert.equal(several.status, 400, JSON.stringify(several.body));
    assert.equal(several.body.error.code, 'team_required');
    const notMine = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', team: 'blue', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }, as('submitter-red'));
    assert.equal(notMine.status, 403, JSON.stringify(notMine.body));
    const noTeam = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } }, as('nobody'));
    assert.equal(noTeam.status, 403, JSON.stringify(noTeam.body));
    const named = await submit('both', { team: 'blue' });
    assert.equal((await api.task(named)).spec.team, 'blue');
    const byAdmin = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } });
    assert.equal(byAdmin.status, 202);
    opened.push(byAdmin.body.task_id);
    const adminTask = await api.task(byAdmin.body.task_id);
    assert.equal(adminTask.spec.team, 'default');
    assert.equal(adminTask.spec.requester, 'local-admin');
  });
});

describe('decisions', () => {
  it('records the identity as the actor, whatever actor the body names', async () => {
    const { id, item } = await risky('submitter-red');
    const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve', actor: 'cto@example.com' }, as('approver-red'));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.item.resolution.actor, 'approver-red');
    assert.equal(res.body.item.resolution.by.subject, tokens['approver-red']!.subject);
    assert.equal(res.body.item.resolution.by.team, 'red');
    const decision = (await api.trace(id)).find((e) => e.type === 'decision');
    assert.equal(decision.actor, 'approver-red');
    assert.equal(decision.data.by.subject, tokens['approver-red']!.subject);
    assert.ok(!JSON.stringify(await api.trace(id)).includes('cto@example.com'));
  });

  it('refuses a requester approving their own risky action when the team separates duties', async () => {
    const { id, item } = await risky('approver-red');
    const own = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' }, as('approver-red'));
    assert.equal(own.status, 403, JSON.stringify(own.body));
    assert.match(own.body.error.message, /separation of duties/);
    // Another person may approve it; the requester may still reject it.
    assert.equal((await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'reject' }, as('approver-red'))).status, 200);
    // Blue does not separate duties.
    const blueToken = new ApiTokenStore(dataDir).create({ name: 'blue-lead', role: 'approver', teams: ['blue'] }).token;
    const blueAuth = { authorization: `Bearer ${blueToken}` };
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'echo risky >> a.txt' }] }, policy: { approval_commands: ['^echo risky'] } }, blueAuth);
    assert.equal(res.status, 202);
    opened.push(res.body.task_id);
    const blueItem = await api.nextItem(res.body.task_id, ['risky_action']);
    assert.equal((await call(base, 'POST', `/v1/tasks/${res.body.task_id}/inbox/${blueItem.item_id}`, { action: 'approve' }, blueAuth)).status, 200);
  });

  it('refuses a budget grant above the team\'s ceiling, naming the field and the ceiling', async () => {
    const id = await submit('submitter-red', { planner: { kind: 'recipe', steps: [{ run: 'echo one >> a.txt' }, { run: 'echo two >> a.txt' }] }, budget: { max_steps: 1 } });
    const item = await api.nextItem(id, ['budget_request']);
    const over = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'grant_budget', budget: { max_steps: 5 } }, as('approver-red'));
    assert.equal(over.status, 403, JSON.stringify(over.body));
    assert.match(over.body.error.message, /max_steps to 6 \(ceiling 3\)/);
    assert.deepEqual(over.body.error.details.map((d: any) => d.path), ['budget.max_steps']);
    // Two grants racing past the API's check: the workflow checks the ceiling again against its own budget.
    await assert.rejects(
      stack.client.workflow.getHandle(id).executeUpdate(decideUpdate, { args: [{ item_id: item.item_id, action: 'grant_budget', budget: { max_steps: 5 }, actor: 'racer', ceiling: { max_steps: 3 } }] }),
      (err: Error) => err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'OverCeiling',
    );
    const ok = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'grant_budget', budget: { max_steps: 2 } }, as('approver-red'));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal((await api.task(id)).budget.max_steps, 3);
  });

  it('bounds grants on teams without a ceiling, tasks of no team and admins: the file\'s default, else the built-in one', async () => {
    /** A task of `auth`'s caller held on a budget request after its first step. */
    const exhausted = async (auth: Record<string, string>): Promise<{ id: string; item: any }> => {
      const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'echo one >> a.txt' }, { run: 'echo two >> a.txt' }] }, budget: { max_steps: 1 } }, auth);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      opened.push(res.body.task_id);
      return { id: res.body.task_id, item: await api.nextItem(res.body.task_id, ['budget_request']) };
    };
    const admin = { authorization: `Bearer ${stack.auth.adminToken}` };
    const blue = await exhausted(as('submitter-blue'));
    const own = await exhausted(admin);
    assert.equal((await api.task(own.id)).spec.team, 'default', 'the local admin in no team submits for the default team');
    for (const [task, who] of [[blue, as('approver-blue')], [own, admin]] as const) {
      const over = await call(base, 'POST', `/v1/tasks/${task.id}/inbox/${task.item.item_id}`, { action: 'grant_budget', budget: { max_steps: 4 } }, who);
      assert.equal(over.status, 403, JSON.stringify(over.body));
      assert.match(over.body.error.message, /max_steps to 5 \(ceiling 4\)/);
    }
    // Without any TEAMS_FILE, the built-in ceiling holds, for the admin too.
    const bare = await startTestStack(temporal, dataDir, `access-bare-${process.pid}`, { ROLES: 'api' });
    try {
      const limit = BUILTIN_GRANT_CEILING.max_usd;
      const over = await call(bare.url!, 'POST', `/v1/tasks/${own.id}/inbox/${own.item.item_id}`, { action: 'grant_budget', budget: { max_usd: limit } }, admin);
      assert.equal(over.status, 403, JSON.stringify(over.body));
      assert.match(over.body.error.message, new RegExp(`max_usd to \\d+ \\(ceiling ${limit}\\)`));
    } finally {
      await bare.stop();
    }
    // A decision reaching the workflow without a ceiling is held to the built-in one.
    await assert.rejects(
      stack.client.workflow.getHandle(own.id).executeUpdate(decideUpdate, { args: [{ item_id: own.item.item_id, action: 'grant_budget', budget: { max_tokens: BUILTIN_GRANT_CEILING.max_tokens }, actor: 'direct' }] }),
      (err: Error) => err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'OverCeiling',
    );
    const ok = await call(base, 'POST', `/v1/tasks/${own.id}/inbox/${own.item.item_id}`, { action: 'grant_budget', budget: { max_steps: 3, max_usd: 10 } }, admin);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });
});

describe('the local admin', () => {
  it('keeps its token in a 0600 file that a restart reuses, and refuses one others can read', async () => {
    const file = path.join(dataDir, 'admin-token');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.readFileSync(file, 'utf8').trim(), stack.auth.adminToken);
    const again = await startTestStack(temporal, dataDir, `access-again-${process.pid}`, { ROLES: 'api' });
    try {
      assert.equal(again.auth.adminToken, stack.auth.adminToken);
      assert.match(again.auth.loginLink()!, /^http:\/\/127\.0\.0\.1:\d+\/login\/local\?code=[A-Za-z0-9_-]{43}$/);
    } finally {
      await again.stop();
    }
    const dir = tempDir('access-admin');
    const token = await ensureAdminToken(dir);
    fs.chmodSync(path.join(dir, 'admin-token'), 0o644);
    await assert.rejects(ensureAdminToken(dir), /readable or writable by others/);
    fs.chmodSync(path.join(dir, 'admin-token'), 0o600);
    assert.equal(await ensureAdminToken(dir), token);
  });

  it('refuses to start on a non-loopback HOST without an identity provider', async () => {
    const cfg = loadConfig({ ...stackEnv(temporal, tempDir('access-host'), 'access-host'), HOST: '0.0.0.0', ROLES: 'api' });
    await assert.rejects(startStack(cfg, createLogger({ level: 'error', component: 'test' })), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /HOST/);
      assert.match(err.message, /API_AUTH/);
      return true;
    });
  });

  it('serves API tokens only, and no admin token, with API_AUTH=tokens on any HOST', async () => {
    const dir = tempDir('access-tokens-only');
    const only = await startStack(loadConfig({ ...stackEnv(temporal, dir, 'access-tokens-only'), HOST: '0.0.0.0', ROLES: 'api', API_AUTH: 'tokens' }), createLogger({ level: 'error', component: 'test' }));
    try {
      assert.equal(only.auth.adminToken, null);
      assert.equal(only.auth.loginLink(), null);
      assert.equal(fs.existsSync(path.join(dir, 'admin-token')), false);
      const url = only.url!.replace('0.0.0.0', '127.0.0.1');
      assert.equal((await call(url, 'GET', '/v1/inbox', undefined, { authorization: `Bearer ${stack.auth.adminToken}` })).status, 401, 'another backend\'s admin token');
      const { token } = new ApiTokenStore(dir).create({ name: 'remote', role: 'viewer', teams: ['red'] });
      assert.equal((await call(url, 'GET', '/v1/inbox', undefined, { authorization: `Bearer ${token}` })).status, 200);
      assert.equal((await fetch(`${url}/login/local?code=x`)).status, 404, 'no browser sign-in without the local admin');
    } finally {
      await only.stop();
    }
  });

  it('gives one-time login codes that work once and expire after 15 minutes', () => {
    let now = 0;
    const codes = new OneTimeLoginCodes(() => now);
    const a = codes.issue();
    const b = codes.issue();
    assert.notEqual(a, b);
    assert.equal(codes.consume(a), true);
    assert.equal(codes.consume(a), false, 'single use');
    assert.equal(codes.consume(`${b}x`), false);
    now += 15 * 60_000;
    assert.equal(codes.consume(b), false, 'expired');
  });
});
