/**
 * GitHub intake: `POST /v1/webhooks/github` turns an issue labelled `agent-ready` into one task per delivery,
 * authenticated by the delivery's signature only; everything unsigned, altered, unmapped, from a bot or about
 * something else starts nothing. GitHub's own example payloads, signed with the test secret; the repository is
 * a local bare one under GITHUB_GIT_BASE. One dev server, recipe tasks on the process driver.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createApp } from '../api/app';
import { labelledIssueTaskId } from '../api/idempotency';
import { BUDGET_PRESETS } from '../domain/budget-presets';
import { loadPriceTable } from '../domain/prices';
import { ConfigError, loadConfig, repoRulesOf } from '../workers/config';
import { createLogger } from '../workers/log';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { call } from './support/http';
import { stackEnv, startTestStack, startTestTemporal } from './support/stack';
import { deliver as deliverTo, exampleDelivery, sign, WEBHOOK_SECRET, type DeliveryOptions } from './support/github-deliveries';
import { taskApi } from './support/task-api';

const SECRET = WEBHOOK_SECRET;
const PLANNER = { kind: 'recipe', steps: [{ run: 'echo fixed > spelling.txt', name: 'fix' }] };

let temporal: DevServer;
let stack: Stack;
let base: string;
let root: string;
let gitBase: string;
let secretFile: string;
let teamsFile: string;
const opened: string[] = [];
const api = taskApi(() => base);

/** GitHub's example `issues.labeled` delivery (with an organization). */
function exampleLabeled(): any {
  return exampleDelivery('issues', (e) => e.action === 'labeled' && e.organization !== undefined);
}

/** The example adjusted: our repository and label, an issue with a budget label, labelled by `login`. */
function labeled(opts: { repo?: string; label?: string; login?: string; type?: string } = {}): any {
  const p = exampleLabeled();
  const label = opts.label ?? 'agent-ready';
  p.repository.full_name = opts.repo ?? 'octo-org/hello';
  p.repository.name = p.repository.full_name.split('/')[1];
  p.repository.default_branch = 'main';
  p.label = { ...p.label, name: label };
  p.issue.title = 'Spelling error in the README file';
  p.issue.body = "It looks like you accidently spelled 'commit' with two 't's.";
  p.issue.labels = [{ ...p.issue.labels[0], name: 'bug' }, { ...p.issue.labels[0], name: label }, { ...p.issue.labels[0], name: 'agent-budget:large' }];
  p.sender = { ...p.sender, login: opts.login ?? 'octocat', type: opts.type ?? 'User' };
  return p;
}

/** Delivers `payload` to this file's backend (or `opts.url`). */
function deliver(payload: unknown, opts: DeliveryOptions = {}) {
  return deliverTo(base, payload, opts);
}

/** The task a labelled issue's delivery body names. */
function taskOfBody(body: string): string {
  return labelledIssueTaskId(crypto.createHash('sha256').update(body).digest('hex'));
}

/** Asserts that no task exists for the delivery body `body`. */
async function noTaskFor(body: string): Promise<void> {
  const res = await call(base, 'GET', `/v1/tasks/${taskOfBody(body)}`);
  assert.equal(res.status, 404, JSON.stringify(res.body));
}

before(async () => {
  temporal = await startTestTemporal();
  root = tempDir('github');
  gitBase = path.join(root, 'git');
  // GITHUB_GIT_BASE/owner/name.git: a real bare repository where GitHub would have one.
  const origin = makeOriginRepo(path.join(gitBase, 'octo-org'), { 'README.md': '# hello\n\nPlease commmit often.\n' });
  fs.renameSync(origin, path.join(gitBase, 'octo-org', 'hello.git'));
  secretFile = path.join(root, 'github-secret');
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  teamsFile = path.join(root, 'teams.yaml');
  fs.writeFileSync(
    teamsFile,
    ['teams:', '  platform: {}', 'github:', '  repos:', '    octo-org/hello: { team: platform }', '    evil-org/hello: { team: platform }', ''].join('\n'),
  );
  stack = await startTestStack(temporal, path.join(root, 'data'), `github-${process.pid}`, {
    TEAMS_FILE: teamsFile,
    SANDBOX_DRIVER: 'process',
    GITHUB_WEBHOOK_SECRET_FILE: secretFile,
    GITHUB_GIT_BASE: gitBase,
    GITHUB_PLANNER: JSON.stringify(PLANNER),
    GITHUB_BOT_ALLOW: 'helper[bot]',
    // Only octo-org's repositories are within the rules; evil-org is mapped to a team but outside them.
    REPO_LOCAL_ROOTS: path.join(gitBase, 'octo-org'),
  });
  base = stack.url!;
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await stack?.stop();
  await temporal?.stop();
});

describe('a labelled issue', () => {
  it('starts exactly one task, even when GitHub delivers it twice, with the goal, repository, team and budget the issue says', async () => {
    const payload = labeled();
    const delivery = crypto.randomUUID();
    const first = await deliver(payload, { delivery });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    const id = first.body.task_id as string;
    opened.push(id);
    assert.equal(id, taskOfBody(JSON.stringify(payload)));
    const again = await deliver(payload, { delivery });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.task_id, id);
    assert.equal(again.body.duplicate, true);
    // GitHub signs the body, not the delivery id: the same body re-sent under another id is the same task.
    const replayed = await deliver(payload);
    assert.equal(replayed.status, 200, JSON.stringify(replayed.body));
    assert.equal(replayed.body.task_id, id);
    assert.equal(replayed.body.duplicate, true);
    const listed = await call(base, 'GET', '/v1/tasks?requester=github:octocat');
    assert.deepEqual(listed.body.tasks.map((t: any) => t.task_id), [id]);

    const item = await api.nextItem(id, ['pr_review']);
    assert.ok(item, 'the recipe ran in a clone of the bare repository and its change is up for review');
    const view = await api.task(id);
    assert.equal(view.spec.goal, "Spelling error in the README file\n\nIt looks like you accidently spelled 'commit' with two 't's.");
    assert.equal(view.spec.repo, path.join(gitBase, 'octo-org', 'hello.git'));
    assert.equal(view.spec.base_branch, 'main');
    assert.equal(view.spec.team, 'platform');
    assert.equal(view.spec.requester, 'github:octocat');
    assert.deepEqual(view.spec.labels, ['bug', 'agent-ready', 'agent-budget:large']);
    assert.deepEqual(view.budget, BUDGET_PRESETS.large);
    const created = (await api.trace(id)).find((e) => e.type === 'created');
    assert.deepEqual(created.data.requested_by, { subject: 'github:octocat', name: 'octocat', team: 'platform', via: `github_webhook:${delivery}` });
    const everything = JSON.stringify([view, await api.trace(id), first.body, again.body]);
    assert.ok(!everything.includes(SECRET), 'the webhook secret appears in no task, trace or answer');
  });

  it('is refused with 422 and the rule when its repository is outside the repository rules', async () => {
    const payload = labeled({ repo: 'evil-org/hello' });
    const res = await deliver(payload);
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'intake_refused');
    assert.match(res.body.error.message, /REPO_LOCAL_ROOTS/);
    await noTaskFor(JSON.stringify(payload));
  });

  it('from an allowlisted bot starts a task', async () => {
    const res = await deliver(labeled({ login: 'helper[bot]', type: 'Bot' }));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    opened.push(res.body.task_id);
    assert.equal((await api.task(res.body.task_id)).spec.requester, 'github:helper[bot]');
  });
});

describe('a delivery that is not signed with the secret', () => {
  it('gets 401 and starts nothing: no signature, a wrong one, another secret, a body altered after signing', async () => {
    // A body of its own: one another test started a task with would name that task.
    const payload = { ...labeled(), test_case: crypto.randomUUID() };
    const signed = JSON.stringify(payload);
    const altered = signed.replace('octo-org/hello', 'octo-org/hellp');
    const cases: { what: string; signature: string | null; body?: string }[] = [
      { what: 'no signature', signature: null },
      { what: 'not sha256=<hex>', signature: 'sha1=0123' },
      { what: 'another secret', signature: sign(signed, 'not-the-secret-0123456789abcdef0123456') },
      { what: 'altered body', signature: sign(signed), body: altered },
      { what: 'truncated MAC', signature: sign(signed).slice(0, 40) },
    ];
    for (const c of cases) {
      const res = await deliver(payload, { signature: c.signature, ...(c.body ? { body: c.body } : {}) });
      assert.equal(res.status, 401, `${c.what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'bad_signature', c.what);
      assert.ok(!JSON.stringify(res.body).includes(SECRET));
      await noTaskFor(c.body ?? signed);
    }
  });

  it('is not read beyond 1 MiB', async () => {
    const big = JSON.stringify({ ...labeled(), padding: 'x'.repeat(1024 * 1024) });
    const res = await deliver(null, { body: big, signature: sign(big) });
    assert.equal(res.status, 413, JSON.stringify(res.body));
  });
});

describe('deliveries intake has nothing to do with', () => {
  it('are answered 200 with the reason and start nothing', async () => {
    const openedIssue = { ...labeled(), action: 'opened' };
    delete openedIssue.label;
    const cases: { what: string; payload: unknown; event?: string; reason: RegExp }[] = [
      { what: 'another label', payload: labeled({ label: 'bug' }), reason: /label "bug" is not "agent-ready"/ },
      { what: 'another action', payload: openedIssue, reason: /issues action opened/ },
      { what: 'another event', payload: labeled(), event: 'push', reason: /event push/ },
      { what: 'an opened pull request', payload: exampleDelivery('pull_request', (e) => e.action === 'opened'), event: 'pull_request', reason: /pull_request action opened/ },
      { what: 'an unmapped repository', payload: labeled({ repo: 'octo-org/elsewhere' }), reason: /octo-org\/elsewhere is not mapped/ },
      { what: 'a bot', payload: labeled({ login: 'renovate[bot]', type: 'Bot' }), reason: /renovate\[bot\] is a bot not in GITHUB_BOT_ALLOW/ },
    ];
    for (const c of cases) {
      // A body of its own (a field GitHub does not send, which intake does not read): another test's task is not this one's.
      Object.assign(c.payload as object, { test_case: crypto.randomUUID() });
      const res = await deliver(c.payload, c.event ? { event: c.event } : {});
      assert.equal(res.status, 200, `${c.what}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.ignored, c.reason, c.what);
      await noTaskFor(JSON.stringify(c.payload));
    }
    const ping = await deliver({ zen: 'Keep it logically awesome.', hook_id: 1 }, { event: 'ping' });
    assert.equal(ping.status, 200);
    assert.deepEqual(ping.body, { ok: true });
  });
});

describe('the webhook route', () => {
  it('authenticates nothing else of /v1: a signed request without a bearer token gets 401 everywhere else', async () => {
    const payload = labeled();
    const body = JSON.stringify(payload);
    const signedHeaders = { authorization: '', 'x-hub-signature-256': sign(body), 'x-github-event': 'issues', 'x-github-delivery': crypto.randomUUID() };
    const spec = JSON.stringify({ repo: path.join(gitBase, 'octo-org', 'hello.git'), goal: 'x', planner: PLANNER });
    for (const [method, p, b] of [
      ['POST', '/v1/tasks', spec],
      ['GET', '/v1/tasks', undefined],
      ['GET', '/v1/inbox', undefined],
      ['GET', '/v1/webhooks/github', undefined],
      ['POST', '/v1/webhooks/github/tasks', body],
      ['POST', '/v1/webhooks', body],
    ] as const) {
      const res = await call(base, method, p, b, { ...signedHeaders, ...(b ? { 'content-type': 'application/json' } : {}) });
      assert.equal(res.status, 401, `${method} ${p}: ${JSON.stringify(res.body)}`);
    }
  });

  it('answers 404 when no webhook secret is configured', async () => {
    const cfg = loadConfig(stackEnv(temporal, path.join(root, 'data-off'), 'github-off'));
    assert.equal(cfg.github, null);
    const app = createApp({
      client: stack.client,
      taskQueue: 'github-off',
      namespace: temporal.namespace,
      log: createLogger({ level: 'error', component: 'test' }),
      auth: { sources: [] },
      repoRules: repoRulesOf(cfg),
      prices: loadPriceTable({}),
    });
    const server = http.createServer(app).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await deliver(labeled(), { url });
      assert.equal(res.status, 404, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'not_found');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('GitHub intake configuration', () => {
  it('names the variable that is wrong', () => {
    const env = (extra: Record<string, string>) => ({ ...stackEnv(temporal, path.join(root, 'data-cfg'), 'github-cfg'), ...extra });
    const rejects = (extra: Record<string, string>, pattern: RegExp) =>
      assert.throws(() => loadConfig(env(extra)), (err: Error) => err instanceof ConfigError && pattern.test(err.message), JSON.stringify(extra));
    const planner = { GITHUB_PLANNER: JSON.stringify(PLANNER) };
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET }, /GITHUB_PLANNER: required/);
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET, GITHUB_PLANNER: '{"kind":' }, /GITHUB_PLANNER: not JSON/);
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET, GITHUB_PLANNER: '{"kind":"recipe","steps":[]}' }, /GITHUB_PLANNER: steps/);
    rejects({ GITHUB_WEBHOOK_SECRET: 'short', ...planner }, /GITHUB_WEBHOOK_SECRET: the secret is shorter/);
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET, GITHUB_WEBHOOK_SECRET_FILE: secretFile, ...planner }, /GITHUB_WEBHOOK_SECRET_FILE: set it or GITHUB_WEBHOOK_SECRET/);
    rejects({ GITHUB_WEBHOOK_SECRET_FILE: path.join(root, 'nope'), ...planner }, /GITHUB_WEBHOOK_SECRET_FILE: no file/);
    const open = path.join(root, 'open-secret');
    fs.writeFileSync(open, SECRET, { mode: 0o644 });
    fs.chmodSync(open, 0o644);
    rejects({ GITHUB_WEBHOOK_SECRET_FILE: open, ...planner }, /GITHUB_WEBHOOK_SECRET_FILE: .* readable by every user/);
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner, GITHUB_GIT_BASE: 'relative/dir' }, /GITHUB_GIT_BASE: a URL/);
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner, GITHUB_GIT_BASE: 'https://user:token@github.example' }, /GITHUB_GIT_BASE: a URL without credentials/);
    const badTeams = path.join(root, 'bad-teams.yaml');
    fs.writeFileSync(badTeams, 'github:\n  repos:\n    "../etc": { team: platform }\n');
    rejects({ TEAMS_FILE: badTeams }, /TEAMS_FILE: github\.repos/);
    rejects({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner, GITHUB_MERGE_ON_APPROVE: 'fast-forward' }, /GITHUB_MERGE_ON_APPROVE/);
    assert.equal(loadConfig(env({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner, GITHUB_MERGE_ON_APPROVE: 'rebase' })).github?.mergeMethod, 'rebase');
    for (const rounds of ['21', '-1', '1.5', 'many']) rejects({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner, GITHUB_MAX_CI_ROUNDS: rounds }, /GITHUB_MAX_CI_ROUNDS/);
    assert.equal(loadConfig(env({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner, GITHUB_MAX_CI_ROUNDS: '0' })).github?.maxCiRounds, 0);
    const cfg = loadConfig(env({ GITHUB_WEBHOOK_SECRET: SECRET, ...planner }));
    assert.equal(cfg.github?.maxCiRounds, 3);
    assert.equal(cfg.github?.mergeMethod, null, 'merging is off unless turned on');
    assert.equal(cfg.github?.label, 'agent-ready');
    assert.equal(cfg.github?.gitBase, 'https://github.com');
    assert.equal((cfg as any).GITHUB_WEBHOOK_SECRET, undefined, 'the secret is kept only where intake reads it');
  });
});
