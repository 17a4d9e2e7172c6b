/**
 * Merging on approval end to end (GITHUB_MERGE_ON_APPROVE=squash): an approval in the inbox merges the task's
 * pull request through the real Octokit client, every call checked against GitHub's OpenAPI description by Prism,
 * trying again on the workflow's timer while GitHub says required checks are pending; a head that moved since the
 * approval is never merged (GitHub's 409), nor is a method the repository does not allow: a health alert says why
 * and the task waits for a human. Recipe tasks on the process driver.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser } from './support/browser';
import { branchCommit, git } from './support/git-fixture';
import { deliver as deliverTo, exampleDelivery, labelledIssue } from './support/github-deliveries';
import type { GithubMock } from './support/github-mock';
import { GITHUB_TEST_TOKEN as TOKEN, startGithubStack, type GithubStack } from './support/github-stack';
import { recordHistory } from './support/histories';
import { eventually } from './support/http';
import { taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
/** Issues the tests start tasks from; the fake holds them so the mirror can label them. */
const ISSUES = { merges: 1, stale: 2, refused: 3, retargeted: 4 } as const;
const PLANNER = { kind: 'recipe', steps: [{ run: 'printf "Please commit often.\\n" > README.md', name: 'fix spelling' }] };
/** Merge attempts the fake refuses with 405 before it lets the first test's pull request merge. */
const HELD_ATTEMPTS = 2;

let env: GithubStack;
let browser: Browser | undefined;
let github: GithubMock;
let base: string;
let bare: string;
const opened: string[] = [];
const api = taskApi(() => base);

/** A labelled issue `number` of {@link REPO}, labelled by octocat. */
function labeled(number: number): any {
  return labelledIssue(REPO, number);
}

/** GitHub's example of a closed pull request, merged by `actor`. */
function mergedOnGithub(number: number, taskId: string, actor: string): any {
  const p = exampleDelivery('pull_request', (e) => e.action === 'closed');
  p.repository.full_name = REPO;
  p.repository.name = 'hello';
  p.pull_request.number = number;
  p.pull_request.head.ref = `agent/${taskId}`;
  p.pull_request.head.repo = { ...p.pull_request.head.repo, full_name: REPO };
  p.pull_request.merged = true;
  p.pull_request.merged_at = new Date().toISOString();
  p.sender = { ...p.sender, login: actor, type: 'User' };
  return p;
}

/** Starts a task from issue `number`, waits for its pull request, and approves it in the inbox; returns the task and its PR number. */
async function approvedTask(number: number, beforeApproval: (pr: number, id: string) => void | Promise<void> = () => undefined): Promise<{ id: string; pr: number; commit: string }> {
  const res = await deliverTo(base, labeled(number));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const id = res.body.task_id as string;
  opened.push(id);
  const item = await api.nextItem(id, ['pr_review']);
  assert.ok(item.detail.pull_request, JSON.stringify((await api.trace(id)).filter((e) => e.type === 'health')));
  const pr = item.detail.pull_request.number as number;
  const commit = (await api.task(id)).commit as string;
  await beforeApproval(pr, id);
  await api.decide(id, item, { action: 'approve' });
  return { id, pr, commit };
}

/** What the task page shows of the task's pull request and its merge, read in a real browser as the local admin. */
async function taskPageFacts(id: string): Promise<{ state: string; href: string | null; rel: string | null; text: string; merge: string | null }> {
  browser ??= await launchBrowser();
  // A bearer token on every request instead of a session: PUBLIC_URL is not this loopback address.
  const context = await browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${env.stack.auth.adminToken}` } });
  try {
    const page = await context.newPage();
    await page.goto(`${base}/tasks/${encodeURIComponent(id)}`);
    await page.getByTestId('task-page').waitFor();
    const link = page.getByTestId('pull-request');
    await link.waitFor({ timeout: 5_000 });
    const merge = page.getByTestId('awaiting-merge');
    return {
      state: (await page.getByTestId('task-state').textContent()) ?? '',
      href: await link.getAttribute('href'),
      rel: await link.getAttribute('rel'),
      text: (await link.textContent()) ?? '',
      merge: (await merge.count()) > 0 ? await merge.textContent() : null,
    };
  } finally {
    await context.close();
  }
}

function agentLabels(issue: number): string[] {
  return github.state.labels(REPO, issue).filter((l) => l.startsWith('agent:'));
}

before(async () => {
  env = await startGithubStack('github-merge', { repo: REPO, readme: 'Please commmit often.\n', planner: PLANNER, env: { GITHUB_MERGE_ON_APPROVE: 'squash' } });
  ({ github, base, bare } = env);
  while (!github.state.hasIssue(REPO, Math.max(...Object.values(ISSUES)))) github.state.addIssue(REPO);
});

after(async () => {
  await browser?.close();
  if (base) await api.cancelOpen(opened);
  await env?.stop();
});

describe('an approved pull request, with merging on', () => {
  it('is merged once, at the approved commit, after GitHub stops saying required checks are pending', async () => {
    const { id, pr, commit } = await approvedTask(ISSUES.merges, (n) => github.state.holdMerges(REPO, n, HELD_ATTEMPTS));
    // While GitHub holds it, the task waits with nothing in the inbox, and the issue still shows the open pull request.
    const waiting = await eventually(() => api.task(id), (v) => v.state === 'awaiting_merge', 'the task waiting for the merge');
    assert.equal(waiting.items.filter((i: any) => i.status === 'pending').length, 0);
    assert.equal(waiting.merge.method, 'squash');
    assert.equal(waiting.merge.sha, commit);
    await eventually(async () => agentLabels(ISSUES.merges), (ls: string[]) => ls.length === 1 && ls[0] === 'agent:pr-open', 'the issue labelled agent:pr-open');

    const done = await api.ended(id);
    assert.equal(done.state, 'done', done.result);
    assert.match(done.result, new RegExp(`pull request #${pr} merged \\(squash\\) on approval by .+; review to merge \\d+ s, approval to merge \\d+ s`));
    assert.deepEqual(github.state.merges(REPO).filter((m) => m.number === pr), [{ number: pr, sha: commit, method: 'squash', by: 'agent-inbox-bot' }], 'merged exactly once, at the approved commit');
    const pull = github.state.pull(REPO, pr)!;
    assert.deepEqual([pull.state, pull.merged], ['closed', true]);
    const trace = await api.trace(id);
    const notYet = trace.filter((e) => /will not merge .* yet/.test(e.message));
    assert.equal(notYet.length, HELD_ATTEMPTS, 'one note per refused attempt');
    assert.match(notYet[0].message, /Required status check "ci" is expected/);
    const merged = trace.find((e) => e.type === 'merged');
    assert.equal(typeof merged.data.approval_to_merge_ms, 'number');
    assert.ok(merged.data.approval_to_merge_ms >= 2_000, 'the first retry waited on its timer');
    assert.equal(branchCommit(bare, `agent/${id}`), commit, 'a merged branch is kept');
    assert.ok(!JSON.stringify([done, trace]).includes(TOKEN), 'the token appears in no task or trace');
    assert.deepEqual(github.violations(), []);
    await env.stack.client.workflow.getHandle(id).result();
    assert.deepEqual(agentLabels(ISSUES.merges), ['agent:done']);
    await recordHistory(env.stack.client, id, 'github-pr-approved-merged');
  });

  it('is never merged once its head moved past the approved commit: a health alert says so, and cancel still ends the task', async () => {
    const { id, pr, commit } = await approvedTask(ISSUES.stale, async (n, taskId) => {
      // The task page links the pull request while it waits for review.
      const open = await taskPageFacts(taskId);
      const url = (await api.task(taskId)).pull_request.url as string;
      assert.match(url, new RegExp(`^https?://.*/${REPO}/pull/${n}$`));
      assert.equal(open.href, url);
      assert.match(open.rel ?? '', /\bnoopener\b/);
      assert.match(open.text, new RegExp(`#${n}\\b`));
      assert.equal(open.merge, null, 'no merge wait before the approval');
      // Someone pushes to the agent's branch between the review and the approval.
      const tree = git(bare, 'rev-parse', `agent/${taskId}^{tree}`);
      const moved = git(bare, 'commit-tree', tree, '-p', `agent/${taskId}`, '-m', 'pushed by someone else');
      git(bare, 'update-ref', `refs/heads/agent/${taskId}`, moved);
    });
    const alert = await api.nextItem(id, ['health_alert']);
    assert.match(alert.title, new RegExp(`#${pr} was approved but not merged: its head is no longer the approved ${commit}.*Head branch was modified`));
    const view = await api.task(id);
    assert.equal(view.state, 'awaiting_merge');
    assert.equal(view.merge.attempts, 1, 'a moved head is not retried');
    // The page says it waits for the merge, and still links the pull request.
    const waiting = await taskPageFacts(id);
    assert.equal(waiting.state, 'awaiting_merge');
    assert.equal(waiting.href, view.pull_request.url);
    assert.match(waiting.merge ?? '', /approved by .+; merging \(squash\)/);
    assert.deepEqual(github.state.merges(REPO).filter((m) => m.number === pr), [], 'nothing merged');
    assert.equal(github.state.pull(REPO, pr)!.state, 'open');
    assert.ok(github.state.requests.some((r) => r.method === 'PUT' && r.path.endsWith(`/pulls/${pr}/merge`) && (r.body as any).sha === commit), 'the merge named the approved commit');

    await api.decide(id, alert, { action: 'cancel' });
    const ended = await api.ended(id);
    assert.equal(ended.state, 'cancelled');
    await eventually(async () => github.state.pull(REPO, pr)?.state, (s) => s === 'closed', 'the pull request closed');
    assert.equal(github.state.pull(REPO, pr)!.merged, false);
    assert.deepEqual(github.violations(), []);
  });

  it('is never merged into another base than the one approved: a pull request retargeted since gets a health alert', async () => {
    const { id, pr } = await approvedTask(ISSUES.retargeted, (n) => {
      // Anyone who may edit the pull request moves it onto another branch (a release branch, say) before the merge.
      github.state.pull(REPO, n)!.base.ref = 'release';
    });
    const alert = await api.nextItem(id, ['health_alert']);
    assert.match(alert.title, new RegExp(`#${pr} was approved but not merged: it now targets release, not main`));
    assert.deepEqual(github.state.merges(REPO).filter((m) => m.number === pr), [], 'nothing merged');
    assert.equal((await api.task(id)).state, 'awaiting_merge');
    assert.deepEqual(github.violations(), []);
  });

  it('is not merged with a method the repository refuses: a health alert, and the merge on GitHub ends it done', async () => {
    const { id, pr } = await approvedTask(ISSUES.refused, () => github.state.setMergeMethods(REPO, ['merge']));
    try {
      const alert = await api.nextItem(id, ['health_alert']);
      assert.match(alert.title, /GitHub refuses to merge it: Squash merges are not allowed on this repository/);
      assert.equal((await api.task(id)).merge.attempts, 1, 'a refusal for good is not retried');
      const res = await deliverTo(base, mergedOnGithub(pr, id, 'writer-wendy'), { event: 'pull_request' });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      const done = await api.ended(id);
      assert.equal(done.state, 'done');
      assert.match(done.result, new RegExp(`#${pr} merged by github:writer-wendy after approval by`));
      assert.equal(done.items.find((i: any) => i.item_id === alert.item_id).status, 'closed', 'the alert closed with the task');
    } finally {
      github.state.setMergeMethods(REPO, ['merge', 'squash', 'rebase']);
    }
  });
});
