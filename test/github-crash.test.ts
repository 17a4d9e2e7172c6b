/**
 * A worker killed with SIGKILL between pushing a task's branch and hearing GitHub's answer to opening its pull
 * request: GitHub opened it, the answer was lost with the worker, and the worker that takes the task over finds
 * that pull request instead of opening a second. The API runs in this process, each worker as its own process.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exited, spawnBackend } from './support/backend-process';
import { branchCommit, tempDir } from './support/git-fixture';
import { deliver, labelledIssue } from './support/github-deliveries';
import { startGithubStack, type GithubStack } from './support/github-stack';
import { eventually } from './support/http';
import { taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
const PLANNER = { kind: 'recipe', steps: [{ run: 'printf "Please commit often.\\n" > README.md', name: 'fix spelling' }] };
/** How long the test waits for GitHub to have been asked to open the pull request (a worker starts, clones, runs, pushes). */
const OPEN_ASKED_TIMEOUT_MS = 60_000;

let env: GithubStack;
const children: ChildProcess[] = [];
const opened: string[] = [];
const api = taskApi(() => env.base);

before(async () => {
  env = await startGithubStack('github-crash', { repo: REPO, readme: 'Please commmit often.\n', planner: PLANNER, workers: false });
  while (!env.github.state.hasIssue(REPO, 3)) env.github.state.addIssue(REPO);
});

after(async () => {
  // Cancelled while a worker still runs: a task's view is a query, and only a worker answers it.
  if (env) await api.cancelOpen(opened);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
  await env?.stop();
});

describe('a worker killed while GitHub opens its pull request', () => {
  it('leaves one pull request: the next worker finds the one GitHub opened', async () => {
    const logFile = path.join(tempDir('github-crash-logs'), 'workers.log');
    const { github } = env;
    github.state.loseAnswerNext('POST', /^\/repos\/octo-org\/hello\/pulls$/);
    const first = spawnBackend(env.workerEnv, logFile);
    children.push(first);

    const p = labelledIssue(REPO, 3);
    const res = await deliver(env.base, p);
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task_id as string;
    opened.push(id);

    // GitHub has opened it, and the worker still waits for the answer: the branch was pushed before.
    await eventually(async () => github.state.pulls(REPO), (ps) => ps.length === 1, 'GitHub asked to open the pull request', OPEN_ASKED_TIMEOUT_MS);
    assert.notEqual(branchCommit(env.bare, `agent/${id}`), null, 'the branch was pushed first');
    first.kill('SIGKILL');
    await exited(first);

    const second = spawnBackend(env.workerEnv, logFile);
    children.push(second);
    const item = await api.nextItem(id, ['pr_review']);
    const pulls = github.state.pulls(REPO);
    assert.equal(pulls.length, 1, 'one pull request');
    assert.equal(item.detail.pull_request?.number, pulls[0]!.number, 'the review names the pull request GitHub opened');
    assert.equal(pulls[0]!.draft, false, 'the worker that took over finished its work: ready for review');
    assert.deepEqual(github.violations(), []);
  });
});
