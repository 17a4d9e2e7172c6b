/**
 * The repository rules hold at intake and again in the worker: a repository planted under DATA_DIR
 * (where a pod's working copy lands) is refused, through a symlink too, and its hooks never run;
 * remote-helper transports never run; an LLM task with a model that has no price is refused.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TaskSpec } from '../domain/task';
import { ConfigError, loadConfig } from '../workers/config';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { TASK_WORKFLOW_TYPE, type TaskWorkflowInput } from '../workflows/messages';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { markers, plantHooks } from './support/hooks';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';

let temporal: DevServer;
let stack: Stack;
let base: string;
let root: string;
let dataDir: string;
let planted: string;
let markerDir: string;
const taskQueue = `repo-intake-${process.pid}`;

before(async () => {
  temporal = await startTestTemporal();
  root = tempDir('repo-intake');
  dataDir = path.join(root, 'data');
  markerDir = path.join(root, 'markers');
  fs.mkdirSync(markerDir);
  // What a sandbox pod can leave in its working copy under the k8s driver: a bare repository with live hooks.
  // (Not under workspaces/, where the sandbox reaper would remove it as an orphan working copy.)
  planted = makeOriginRepo(path.join(dataDir, 'mirror', 't-planted'), { 'README.md': '# planted\n' });
  plantHooks(path.join(planted, 'hooks'), markerDir, 'planted');
  stack = await startTestStack(temporal, dataDir, taskQueue);
  base = stack.url!;
});

after(async () => {
  await stack?.stop();
  await temporal?.stop();
});

const recipe = { kind: 'recipe', steps: [{ run: 'echo changed >> README.md' }] };

/** Expects `repo` refused at intake with 400 naming `rule`. */
async function refusedAtIntake(repo: string, rule: RegExp): Promise<void> {
  const res = await call(base, 'POST', '/v1/tasks', { repo, goal: 'x', planner: recipe });
  assert.equal(res.status, 400, `${repo}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body.error.code, 'repo_not_allowed');
  assert.match(res.body.error.message, rule);
}

/** Starts a task straight through Temporal, as a script with a client could, skipping the API. */
async function startDirectly(repo: string): Promise<string> {
  const taskId = `t-direct${Math.random().toString(36).slice(2, 10)}`;
  const input: TaskWorkflowInput = { task_id: taskId, spec: TaskSpec.parse({ repo, goal: 'x', planner: recipe }), created_at: new Date().toISOString() };
  await stack.client.workflow.start(TASK_WORKFLOW_TYPE, { workflowId: taskId, taskQueue, args: [input] });
  return taskId;
}

async function ended(id: string): Promise<any> {
  const res = await eventually(
    () => call(base, 'GET', `/v1/tasks/${id}`),
    (r) => ['failed', 'pr_open', 'done', 'rejected', 'cancelled'].includes(r.body.state),
    `${id} to fail or open a review`,
  );
  return res.body;
}

describe('a repository planted under DATA_DIR', () => {
  it('has live hooks: an ordinary push into it runs them (control)', () => {
    const seed = tempDir('repo-intake-seed');
    git(seed, 'clone', '--quiet', planted, 'c');
    git(path.join(seed, 'c'), 'commit', '--allow-empty', '-m', 'control');
    git(path.join(seed, 'c'), 'push', '--quiet', 'origin', 'HEAD:refs/heads/control');
    assert.ok(markers(markerDir).includes('pre-receive-planted'));
    for (const m of markers(markerDir)) fs.rmSync(path.join(markerDir, m));
  });

  it('is refused at intake by path, file:// URL and through symlinks, and its hook never runs', async () => {
    await refusedAtIntake(planted, /DATA_DIR/);
    await refusedAtIntake(`file://${planted}`, /DATA_DIR/);
    const links = tempDir('repo-intake-links');
    fs.symlinkSync(planted, path.join(links, 'repo.git'));
    fs.symlinkSync(dataDir, path.join(links, 'data'));
    await refusedAtIntake(path.join(links, 'repo.git'), /DATA_DIR/);
    await refusedAtIntake(path.join(links, 'data', 'mirror', 't-planted', 'origin.git'), /DATA_DIR/);
    assert.deepEqual(markers(markerDir), []);
  });

  it('is refused by the worker when a task is started without the API, and its hook never runs', async () => {
    const links = tempDir('repo-intake-direct');
    fs.symlinkSync(planted, path.join(links, 'repo.git'));
    for (const repo of [planted, path.join(links, 'repo.git')]) {
      const t = await ended(await startDirectly(repo));
      assert.equal(t.state, 'failed', `${repo}: ${t.result}`);
      assert.match(t.result, /InvalidInput/);
      assert.match(t.result, /DATA_DIR/);
    }
    assert.deepEqual(markers(markerDir), []);
  });
});

describe('transports', () => {
  it('never runs a remote-helper transport, at intake or in the worker', async () => {
    const marker = path.join(markerDir, 'ext-ran');
    const repo = `ext::sh -c touch% ${marker}`;
    await refusedAtIntake(repo, /transport/);
    await refusedAtIntake('fd::3', /transport/);
    const t = await ended(await startDirectly(repo));
    assert.equal(t.state, 'failed');
    assert.match(t.result, /InvalidInput/);
    assert.match(t.result, /transport/);
    assert.equal(fs.existsSync(marker), false);
  });

  it('refuses a local repository outside REPO_LOCAL_ROOTS', async () => {
    // Outside the temp directory wherever the checkout lives (a clone under /tmp would make /proc/self/cwd local).
    await refusedAtIntake('/usr', /REPO_LOCAL_ROOTS/);
  });
});

describe('budgets at intake', () => {
  it('refuses an LLM task whose model the price table does not know', async () => {
    const origin = makeOriginRepo(tempDir('repo-intake-llm'), { 'README.md': '# x\n' });
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'x', planner: { kind: 'llm', provider: 'openai', model: 'my-local-model' } });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'unpriced_model');
    assert.match(res.body.error.message, /my-local-model[\s\S]*MODEL_PRICES/);
  });
});

describe('configuration', () => {
  it('fails fast naming REPO_ALLOW, GIT_CREDENTIALS_FILE or MODEL_PRICES', () => {
    const bad = (env: Record<string, string>, name: RegExp): void =>
      assert.throws(() => loadConfig({ DATA_DIR: dataDir, ...env }), (err: unknown) => err instanceof ConfigError && name.test(err.message));
    bad({ REPO_ALLOW: 'github.com/**' }, /REPO_ALLOW/);
    bad({ GIT_CREDENTIALS_FILE: path.join(dataDir, 'credentials') }, /GIT_CREDENTIALS_FILE: must not be inside DATA_DIR/);
    bad({ GIT_CREDENTIALS_FILE: path.join(root, 'missing') }, /GIT_CREDENTIALS_FILE: no file/);
    bad({ MODEL_PRICES: '{"m": {"input": 1}}' }, /MODEL_PRICES/);
    const cfg = loadConfig({ DATA_DIR: dataDir, REPO_ALLOW: 'https://github.com/acme/**, ssh://github.com/acme/**', REPO_LOCAL_ROOTS: '' });
    assert.deepEqual(cfg.REPO_ALLOW, ['https://github.com/acme/**', 'ssh://github.com/acme/**']);
    assert.deepEqual(cfg.REPO_LOCAL_ROOTS, []);
  });
});
