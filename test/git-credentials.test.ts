/**
 * Credentials stay with the worker's own git: a repository URL carrying one is refused at intake, and a task
 * whose origin needs one (a real smart-HTTP server requiring Basic auth) clones and pushes with the
 * worker's GIT_CREDENTIALS_FILE while nothing the sandbox, the trace or an artifact can see holds the secret.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GitError, gitDirOf } from '../activities/git/workspace';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { branchCommit, filesHolding, makeOriginRepo, tempDir } from './support/git-fixture';
import { startGitHttpServer, type GitHttpServer } from './support/git-http-server';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

const TOKEN = 'tok-9f2c1e7a55d04b3c';
let temporal: DevServer;
let stack: Stack;
let server: GitHttpServer;
let base: string;
let dataDir: string;
let origin: string;
let credentials: string;
let credentialLines: string;
let strict: GitHttpServer;

before(async () => {
  temporal = await startTestTemporal();
  const root = tempDir('git-credentials');
  const served = path.join(root, 'served');
  origin = makeOriginRepo(served, { 'README.md': '# private\n' });
  server = await startGitHttpServer(served, 'agent', TOKEN);
  // A second server whose password the worker's file has wrong (a rotated token, say).
  strict = await startGitHttpServer(served, 'agent', 'rotated-password');
  credentials = path.join(root, 'credentials');
  credentialLines = `${server.origin.replace('://', `://agent:${TOKEN}@`)}\n${strict.origin.replace('://', '://agent:stale-password@')}\n`;
  fs.writeFileSync(credentials, credentialLines, { mode: 0o600 });
  dataDir = path.join(root, 'data');
  stack = await startTestStack(temporal, dataDir, `git-credentials-${process.pid}`, {
    REPO_ALLOW: 'http://127.0.0.1:*/**',
    GIT_CREDENTIALS_FILE: credentials,
  });
  base = stack.url!;
});

after(async () => {
  await stack?.stop();
  await server?.stop();
  await strict?.stop();
  await temporal?.stop();
});

describe('credentials of a task\'s repository', () => {
  it('refuses a URL that carries them, without echoing the secret', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { repo: `${server.origin.replace('://', `://agent:${TOKEN}@`)}/origin.git`, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'repo_not_allowed');
    assert.match(res.body.error.message, /GIT_CREDENTIALS_FILE/);
    assert.ok(!JSON.stringify(res.body).includes(TOKEN));
  });

  it('clones and pushes with the worker\'s credentials while the sandbox, trace and artifacts never see them', async () => {
    // The step prints everything the sandbox can read about its repository into its log (an artifact).
    const look = 'cat /workspace.git/config "$GIT_DIR/config" 2>&1; git config --list 2>&1; env; echo changed >> README.md';
    const res = await call(base, 'POST', '/v1/tasks', { repo: `${server.origin}/origin.git`, goal: 'Change the readme', planner: { kind: 'recipe', steps: [{ run: look }] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task_id;
    const t = await eventually(
      () => call(base, 'GET', `/v1/tasks/${id}`),
      (r) => r.body.items?.some((i: any) => i.kind === 'pr_review') || ['failed', 'done', 'cancelled'].includes(r.body.state),
      'a review item',
    );
    assert.ok(t.body.items?.some((i: any) => i.kind === 'pr_review'), `task is ${t.body.state}: ${t.body.result}`);
    assert.ok(branchCommit(origin, `agent/${id}`), 'the push landed on the server');
    assert.ok(server.counts.unauthorized > 0, 'the server asked for credentials');

    const config = fs.readFileSync(path.join(gitDirOf(path.join(dataDir, 'workspaces', id)), 'config'), 'utf8');
    assert.match(config, /url = http:\/\/127\.0\.0\.1:\d+\/origin\.git/);
    assert.ok(!config.includes(TOKEN), 'not in the repository config the sandbox can read');
    const trace = await call(base, 'GET', `/v1/tasks/${id}/trace`);
    assert.equal(trace.status, 200);
    assert.ok(!JSON.stringify(trace.body).includes(TOKEN), 'not in the trace');
    assert.ok(!JSON.stringify(t.body).includes(TOKEN), 'not in the task view');
    const log = await call(base, 'GET', `/v1/tasks/${id}/artifacts/step-1-0.log`);
    assert.equal(log.status, 200);
    assert.match(String(log.body), /origin\.git/, 'the step did read the repository config');
    assert.deepEqual(filesHolding(dataDir, TOKEN), [], 'no file under DATA_DIR (working copies, sandboxes, artifacts)');
    await call(base, 'POST', `/v1/tasks/${id}/cancel`, {});
  });

  it('only reads the credentials file: a credential the server refuses is not erased from it', async () => {
    const res = await call(base, 'POST', '/v1/tasks', { repo: `${strict.origin}/origin.git`, goal: 'x', planner: { kind: 'recipe', steps: [{ run: 'true' }] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const t = await eventually(() => call(base, 'GET', `/v1/tasks/${res.body.task_id}`), (r) => r.body.state === 'failed', 'the task to fail');
    assert.match(t.body.result, /RepoUnavailable/);
    assert.ok(strict.counts.unauthorized > 1, 'the stale credential was tried');
    assert.equal(fs.readFileSync(credentials, 'utf8'), credentialLines);
  });

  it('redacts URL credentials from git failures', () => {
    const err = new GitError(['clone', '--', `https://agent:${TOKEN}@git.example/x.git`], 128, `fatal: unable to access 'https://agent:${TOKEN}@git.example/x.git/'`);
    assert.ok(!err.message.includes(TOKEN));
    assert.ok(!err.args.join(' ').includes(TOKEN));
    assert.ok(!err.stderr.includes(TOKEN));
  });
});
