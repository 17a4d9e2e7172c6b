/**
 * The HTTP API refuses bad input with a clear 4xx before it calls Temporal.
 *
 * The client's connection points at a closed loopback port and an interceptor records
 * every workflow call, so a request that reached Temporal would show up (and fail slowly).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client, Connection, type WorkflowClientInterceptor } from '@temporalio/client';
import { createApp } from '../api/app';
import { localAdminSource } from '../api/auth/local-admin';
import { DEFAULT_PRICES } from '../domain/prices';
import type { RepoRules } from '../domain/repo-policy';
import type { Logger } from '../workers/log';
import { authorize, call } from './support/http';

/** A logger that keeps what it is given, so tests can read the request log. */
function memoryLogger(): Logger & { entries: { level: string; msg: string; attrs: Record<string, unknown> }[] } {
  const entries: { level: string; msg: string; attrs: Record<string, unknown> }[] = [];
  const at = (level: string) => (msg: string, attrs: Record<string, unknown> = {}) => void entries.push({ level, msg, attrs });
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve, reject) => probe.close((err) => (err ? reject(err) : resolve())));
  return port;
}

const temporalCalls: string[] = [];
const recordCalls: WorkflowClientInterceptor = {
  start: (input, next) => (temporalCalls.push(`start ${input.options.workflowId}`), next(input)),
  startWithDetails: (input, next) => (temporalCalls.push(`start ${input.options.workflowId}`), next(input)),
  startUpdate: (input, next) => (temporalCalls.push(`update ${input.updateName}`), next(input)),
  query: (input, next) => (temporalCalls.push(`query ${input.queryType}`), next(input)),
  describe: (input, next) => (temporalCalls.push('describe'), next(input)),
};

const log = memoryLogger();
/** The local admin token of the app under test: validation is checked after authentication. */
const ADMIN_TOKEN = `aia_${'v'.repeat(43)}`;
let connection: Connection;
let server: Server;
let base: string;

/** A data directory and a local root of the backend under test; nothing is cloned, only paths are checked. */
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-inbox-api-validation-'));
const dataDir = path.join(root, 'data');
const repoRules: RepoRules = { allow: ['https://github.com/acme/**', 'ssh://github.com/acme/**'], localRoots: [root], forbidden: [dataDir] };

const good = { repo: path.join(root, 'repo.git'), goal: 'Fix the greeting', planner: { kind: 'recipe', steps: [{ run: 'true' }] } };

before(async () => {
  connection = Connection.lazy({ address: `127.0.0.1:${await closedPort()}` });
  const client = new Client({ connection, interceptors: { workflow: [recordCalls] } });
  const app = createApp({ client, taskQueue: 'api-validation', namespace: 'default', log, repoRules, prices: DEFAULT_PRICES, auth: { sources: [localAdminSource(ADMIN_TOKEN)] } });
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  authorize(base, ADMIN_TOKEN);
});

after(async () => {
  await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
  await connection.close();
  fs.rmSync(root, { recursive: true, force: true });
  assert.deepEqual(temporalCalls, [], 'no request reached Temporal');
  assert.deepEqual(
    log.entries.filter((e) => e.level === 'error'),
    [],
    'no request failed with a fault',
  );
});

const paths = (body: any): string[] => body.error.details.map((d: { path: string }) => d.path);

describe('POST /v1/tasks', () => {
  it('answers malformed JSON with 400 invalid_json', async () => {
    const res = await call(base, 'POST', '/v1/tasks', '{"repo": ');
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'invalid_json');
  });

  it('names every field of the wrong type by its dotted path', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { ...good, budget: { max_steps: 'ten' }, priority: 9 });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'invalid_request');
    assert.deepEqual(paths(res.body).sort(), ['budget.max_steps', 'priority']);
    assert.match(res.body.error.message, /budget\.max_steps/);
  });

  it('refuses a field the schema does not know', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { ...good, colour: 'blue' });
    assert.equal(res.status, 400);
    assert.deepEqual(paths(res.body), ['colour']);
  });

  it('requires a planner', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { repo: good.repo, goal: good.goal });
    assert.equal(res.status, 400);
    assert.deepEqual(paths(res.body), ['planner']);
  });

  it('refuses a priority outside 1..5', async () => {
    for (const priority of [0, 6, 2.5, '1']) {
      const res = await call(base, 'POST', '/v1/tasks', { ...good, priority });
      assert.equal(res.status, 400, `priority ${JSON.stringify(priority)}`);
      assert.deepEqual(paths(res.body), ['priority']);
    }
  });

  it('refuses an approval command that is not a regular expression', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { ...good, policy: { approval_commands: ['('] } });
    assert.equal(res.status, 400);
    assert.deepEqual(paths(res.body), ['policy.approval_commands.0']);
  });

  it('answers a body over the size limit with 413', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { ...good, goal: 'x'.repeat(600 * 1024) });
    assert.equal(res.status, 413);
    assert.equal(res.body.error.code, 'payload_too_large');
  });

  it('answers a body that is not JSON with 415', async () => {
    const text = await call(base, 'POST', '/v1/tasks', 'repo=x', { 'content-type': 'text/plain' });
    assert.equal(text.status, 415);
    assert.equal(text.body.error.code, 'unsupported_media_type');
    const form = await call(base, 'POST', '/v1/tasks', 'repo=x', { 'content-type': 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415);
  });

  it('refuses a JSON body that is not an object', async () => {
    const res = await call(base, 'POST', '/v1/tasks', '[1, 2]');
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'invalid_request');
  });

  it('refuses a malformed Idempotency-Key', async () => {
    for (const key of ['has spaces', 'x'.repeat(201), 'quote\'s']) {
      const res = await call(base, 'POST', '/v1/tasks', good, { 'idempotency-key': key });
      assert.equal(res.status, 400, key);
      assert.deepEqual(paths(res.body), ['idempotency-key']);
    }
  });
});

describe('repository intake', () => {
  /** Posts a task naming `repo` and expects it refused by the named rule. */
  async function refused(repo: string, rule: RegExp, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await call(base, 'POST', '/v1/tasks', { ...good, repo, ...extra });
    assert.equal(res.status, 400, `${repo}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, 'repo_not_allowed', repo);
    assert.deepEqual(paths(res.body), ['repo']);
    assert.match(res.body.error.message, rule, repo);
    return res.body.error.message;
  }

  it('refuses credentials in the URL and says where they go instead', async () => {
    for (const repo of [
      'https://x-access-token:ghp_secret@github.com/acme/app.git',
      'https://ghp_secret@github.com/acme/app.git',
      'ssh://git:hunter2@github.com/acme/app.git',
      'git:hunter2@github.com:acme/app.git',
    ]) {
      const message = await refused(repo, /GIT_CREDENTIALS_FILE/);
      assert.doesNotMatch(message, /ghp_secret|hunter2/, 'the secret is not echoed');
    }
  });

  it('refuses remote-helper and unknown transports', async () => {
    for (const repo of ['ext::sh -c touch% /tmp/pwned', 'fd::7', 'git+ssh://github.com/acme/app.git', 'ftp://github.com/acme/app.git']) {
      await refused(repo, /transport/);
    }
  });

  it('refuses a remote that REPO_ALLOW does not match, dot segments included', async () => {
    await refused('https://evil.example/acme/app.git', /REPO_ALLOW/);
    await refused('https://github.com/other/app.git', /REPO_ALLOW/);
    await refused('git@evil.example:acme/app.git', /REPO_ALLOW/);
    await refused('https://github.com/acme/../other/app.git', /"\.\."/);
    await refused('https://github.com/acme/%2e%2e/other/app.git', /encoded/);
  });

  it('refuses a relative path, a path outside REPO_LOCAL_ROOTS and one inside DATA_DIR', async () => {
    await refused('repo.git', /absolute path/);
    await refused('/etc/repo.git', /REPO_LOCAL_ROOTS/);
    await refused(`file://${path.join(root, '..', 'elsewhere.git')}`, /REPO_LOCAL_ROOTS/);
    await refused(path.join(dataDir, 'workspaces', 'planted.git'), /DATA_DIR/);
    await refused(`file://${path.join(dataDir, 'workspaces', 'planted.git')}`, /DATA_DIR/);
    await refused(`${root}/x/../data/workspaces/planted.git`, /DATA_DIR/);
  });

  it('refuses an LLM task whose model has no price, naming the model and MODEL_PRICES', async () => {
    for (const budget of [undefined, { max_usd: 2 }]) {
      const res = await call(base, 'POST', '/v1/tasks', { ...good, planner: { kind: 'llm', model: 'llama-local-7b' }, ...(budget ? { budget } : {}) });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'unpriced_model');
      assert.deepEqual(paths(res.body), ['planner.model']);
      assert.match(res.body.error.message, /"llama-local-7b"/);
      assert.match(res.body.error.message, /MODEL_PRICES='\{"llama-local-7b":\{"input"/);
    }
  });
});

describe('decisions, messages and cancellation', () => {
  it('requires a budget to grant', async () => {
    const res = await call(base, 'POST', '/v1/tasks/t-abc/inbox/budget_request-1', { action: 'grant_budget' });
    assert.equal(res.status, 400);
    assert.deepEqual(paths(res.body), ['budget']);
  });

  it('refuses an unknown action and an empty grant', async () => {
    const unknown = await call(base, 'POST', '/v1/tasks/t-abc/inbox/pr_review-1', { action: 'merge' });
    assert.equal(unknown.status, 400);
    assert.deepEqual(paths(unknown.body), ['action']);
    const empty = await call(base, 'POST', '/v1/tasks/t-abc/inbox/budget_request-1', { action: 'grant_budget', budget: {} });
    assert.equal(empty.status, 400);
    assert.deepEqual(paths(empty.body), ['budget']);
  });

  it('requires text in a message and refuses unknown cancel fields', async () => {
    const msg = await call(base, 'POST', '/v1/tasks/t-abc/messages', { text: '' });
    assert.equal(msg.status, 400);
    assert.deepEqual(paths(msg.body), ['text']);
    const cancel = await call(base, 'POST', '/v1/tasks/t-abc/cancel', { reason: 'done', force: true });
    assert.equal(cancel.status, 400);
    assert.deepEqual(paths(cancel.body), ['force']);
  });
});

describe('ids in the path', () => {
  it('answers a malformed task id with 404 task_not_found', async () => {
    for (const [method, path] of [
      ['GET', '/v1/tasks/not-a-task'],
      ['GET', '/v1/tasks/t-a_b/trace'],
      ['POST', '/v1/tasks/t-../cancel'],
      ['POST', `/v1/tasks/t-${'a'.repeat(65)}/messages`],
    ] as const) {
      const res = await call(base, method, path, method === 'POST' ? {} : undefined);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.body.error.code, 'task_not_found');
    }
  });

  it('answers a malformed item id or artifact name with 404', async () => {
    const item = await call(base, 'POST', '/v1/tasks/t-abc/inbox/..', { action: 'approve' });
    assert.equal(item.status, 404);
    const item2 = await call(base, 'POST', '/v1/tasks/t-abc/inbox/pr_review', { action: 'approve' });
    assert.equal(item2.body.error.code, 'unknown_item');
    const artifact = await call(base, 'GET', '/v1/tasks/t-abc/artifacts/.hidden');
    assert.equal(artifact.status, 404);
    assert.equal(artifact.body.error.code, 'artifact_not_found');
  });
});

describe('listings', () => {
  it('refuses a filter that could change the visibility query', async () => {
    const res = await call(base, 'GET', "/v1/inbox?repo=x'%20OR%20'1'='1");
    assert.equal(res.status, 400);
    assert.deepEqual(paths(res.body), ['repo']);
    const tasks = await call(base, 'GET', '/v1/tasks?requester=a%5C');
    assert.equal(tasks.status, 400);
    assert.deepEqual(paths(tasks.body), ['requester']);
  });

  it('refuses unknown kinds, states, parameters and limits out of range', async () => {
    for (const path of [
      '/v1/inbox?kind=nope',
      '/v1/inbox?limit=1001',
      '/v1/inbox?limit=0',
      '/v1/inbox?priority=high',
      '/v1/inbox?colour=blue',
      '/v1/tasks?state=sleeping',
      '/v1/tasks?limit=501',
      '/v1/tasks?label=a&label=b',
    ]) {
      const res = await call(base, 'GET', path);
      assert.equal(res.status, 400, path);
      assert.equal(res.body.error.code, 'invalid_request', path);
    }
  });
});

describe('every response', () => {
  it('answers an unknown route with a JSON 404', async () => {
    const res = await call(base, 'GET', '/v1/nowhere');
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'not_found');
  });

  it('echoes a well-formed X-Request-Id, replaces a malformed one, and logs the request with it', async () => {
    const echoed = await call(base, 'GET', '/v1/nowhere', undefined, { 'x-request-id': 'abc-123' });
    assert.equal(echoed.headers.get('x-request-id'), 'abc-123');
    assert.equal(echoed.body.error.request_id, 'abc-123');
    const replaced = await call(base, 'GET', '/v1/nowhere', undefined, { 'x-request-id': 'no spaces allowed' });
    assert.match(replaced.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const line = log.entries.find((e) => e.msg === 'http request' && e.attrs.request_id === 'abc-123');
    assert.equal(line?.level, 'debug');
    assert.equal(line?.attrs.status, 404);
  });
});

describe('GET /healthz', () => {
  it('answers 503 when Temporal is unreachable', async () => {
    const res = await call(base, 'GET', '/healthz');
    assert.equal(res.status, 503);
    assert.equal(res.body.temporal, 'unreachable');
    assert.equal(res.body.namespace, 'default');
  });
});
