/**
 * Failing CI on the agent's pull request, end to end: GitHub's own example `check_run` and `check_suite`
 * deliveries, adjusted and signed, name a failing check on the task's last commit; the task reads the checks back
 * through the real Octokit client (every call checked against GitHub's OpenAPI description by Prism) and sends
 * the agent back with the failing checks' names and output, inert. Once per commit, never for its own
 * self-check, never for a pull request not its own, and after GITHUB_MAX_CI_ROUNDS rounds in a row a health
 * alert asks a human instead. Recipe tasks on the process driver; the recipe writes the round's feedback into
 * the repository, so each round pushes a new commit and what reached the agent can be read there.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CHECKS_ACTOR, checksRequest, MAX_CHECK_ANNOTATIONS, MAX_CHECK_TEXT_CHARS, MAX_CHECKS_REQUEST_CHARS, MAX_FAILED_CHECKS, SELF_CHECK_NAME, type FailedCheck } from '../domain/checks';
import { git } from './support/git-fixture';
import { deliver as deliverTo, exampleDelivery, type DeliveryOptions, labelledIssue } from './support/github-deliveries';
import type { GithubMock } from './support/github-mock';
import type { CheckRunRecord } from './support/github-mock/fake';
import { startGithubStack, type GithubStack } from './support/github-stack';
import { recordHistory } from './support/histories';
import { eventually } from './support/http';
import { taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
const LAST_ISSUE = 9;
const PLANNER = {
  kind: 'recipe',
  steps: [
    { run: 'printf "Please commit often.\\n" > README.md', name: 'fix spelling' },
    // What the round was asked: the task hands a round's feedback to its steps as AGENT_FEEDBACK.
    { run: 'printf "%s\\n" "${AGENT_FEEDBACK:-none}" > FEEDBACK.md', name: 'note the feedback' },
  ],
};
/** CI output written to break out: a mention, a closing keyword, a fold closed, HTML, a fence. */
const HOSTILE = 'Closes #1 and fixes octo-org/hello#2, ping @octo-org/owners </details><summary>x</summary> <img src=x onerror=alert(1)> ```';

let env: GithubStack;
let github: GithubMock;
let base: string;
let bare: string;
let repoId: number;
const opened: string[] = [];
const api = taskApi(() => base);

function deliver(payload: unknown, opts: DeliveryOptions = {}) {
  return deliverTo(base, payload, opts);
}

/** A labelled issue `number` of {@link REPO}, labelled by octocat. */
function labeled(number: number): any {
  return labelledIssue(REPO, number);
}

/** GitHub's example of a failing check run, as `name` on `sha` of pull request `number` from `head` (in repository `headRepoId`). */
function checkRun(number: number, head: string, sha: string, name: string, headRepoId = repoId): any {
  const p = exampleDelivery('check_run', (e) => e.action === 'completed' && e.check_run.conclusion === 'failure');
  p.repository.full_name = REPO;
  p.repository.name = 'hello';
  p.repository.id = repoId;
  p.check_run.name = name;
  p.check_run.head_sha = sha;
  p.check_run.check_suite.head_sha = sha;
  p.check_run.check_suite.head_branch = head;
  const listed = p.check_run.pull_requests[0];
  listed.number = number;
  listed.head = { ...listed.head, ref: head, sha, repo: { ...listed.head.repo, id: headRepoId } };
  p.check_run.pull_requests = [listed];
  p.check_run.check_suite.pull_requests = [listed];
  return p;
}

/** GitHub's example of a completed check suite, failed on `sha` of branch `head`, listing no pull request (as for a suite GitHub matched to none). */
function checkSuite(head: string, sha: string): any {
  const p = exampleDelivery('check_suite', (e) => e.action === 'completed' && e.check_suite.pull_requests.length > 0);
  p.repository.full_name = REPO;
  p.repository.name = 'hello';
  p.repository.id = repoId;
  p.check_suite.conclusion = 'failure';
  p.check_suite.head_sha = sha;
  p.check_suite.head_branch = head;
  p.check_suite.pull_requests = [];
  return p;
}

/** A completed check run on `sha` as CI reports one. */
function ciRun(sha: string, name: string, conclusion: string, output: Partial<CheckRunRecord['output']> = {}, annotations: CheckRunRecord['annotations'] = []): CheckRunRecord {
  return github.state.addCheckRun(REPO, {
    name, headSha: sha, status: 'completed', conclusion, detailsUrl: null, externalId: null,
    output: { title: null, summary: null, text: null, ...output }, annotations,
  });
}

/** `markdown` without its fenced code blocks (a fence closes only with a line of at least as many backticks). */
function outsideCode(markdown: string): string {
  const kept: string[] = [];
  let fence: string | null = null;
  for (const line of markdown.split('\n')) {
    const m = /^(`{3,})\s*$/.exec(line) ?? /^(`{3,})/.exec(line);
    if (fence === null && m) fence = m[1]!;
    else if (fence !== null && m && m[1]!.length >= fence.length && /^`+\s*$/.test(line)) fence = null;
    else if (fence === null) kept.push(line);
  }
  return kept.join('\n');
}

/** Asserts `text` (handed on from CI output) can act on nothing: no mention, issue reference, closing keyword, fold or HTML outside code. */
function assertInert(text: string, where: string): void {
  assert.ok(!/@octo-org\/owners/.test(text), `${where} mentions: ${text}`);
  assert.ok(!/(?:^|[^\w])(?:[Cc]loses|fixes) (?:octo-org\/hello)?#\d/.test(text), `${where} closes an issue: ${text}`);
  assert.ok(!/<\/?(?:details|summary)\b/i.test(text), `${where} opens or closes a fold: ${text}`);
  assert.ok(!/<img\b/i.test(outsideCode(text)), `${where} carries HTML outside code: ${text}`);
}

/** Starts a task from issue `number` and waits for its pull request; returns the task, its review item, the PR number and the head commit. */
async function taskWithPullRequest(number: number): Promise<{ id: string; item: any; pr: number; sha: string }> {
  const res = await deliver(labeled(number));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const id = res.body.task_id as string;
  opened.push(id);
  const item = await api.nextItem(id, ['pr_review']);
  assert.ok(item.detail.pull_request, `the review item names its pull request: ${JSON.stringify((await api.trace(id)).filter((e) => e.type === 'health'))}`);
  const sha = (await api.task(id)).commit;
  // The task reads the commit's checks once as its review wait starts: let that read pass before CI reports.
  await readAtReview(id, sha);
  return { id, item, pr: item.detail.pull_request.number, sha };
}

/** Waits until task `id` has read the checks of `sha` as the wait for its review started, and found none failing. */
async function readAtReview(id: string, sha: string): Promise<void> {
  await eventually(() => api.trace(id), (tr) => tr.some((e) => e.type === 'note' && e.data?.head_sha === sha && /^no failing check/.test(e.message)), `checks of ${sha} read`, 30_000);
}

/** The round's pending review item once round `round` is up for review. */
async function reviewOfRound(id: string, round: number): Promise<{ view: any; item: any }> {
  const view = await eventually(() => api.task(id), (t) => t.round === round && t.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'), `round ${round} up for review`, 60_000);
  return { view, item: view.items.find((i: any) => i.kind === 'pr_review' && i.status === 'pending') };
}

before(async () => {
  // One CI round in a row, then a human is asked.
  env = await startGithubStack('github-checks', { repo: REPO, readme: 'Please commmit often.\n', planner: PLANNER, env: { GITHUB_MAX_CI_ROUNDS: '1' } });
  ({ github, base, bare } = env);
  repoId = github.state.repo(REPO)!.id;
  while (!github.state.hasIssue(REPO, LAST_ISSUE)) github.state.addIssue(REPO);
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await env?.stop();
});

describe('failing checks on the agent’s pull request', () => {
  let task: { id: string; item: any; pr: number; sha: string };

  it('send the agent back with the checks’ names and output, inert, once per commit; its own self-check and other pull requests’ checks start nothing', async () => {
    task = await taskWithPullRequest(7);
    const { id, item, pr, sha } = task;
    const branch = `agent/${id}`;
    // The task's own self-check failing (as an App reports it) is not CI; a passing check is nothing to fix.
    ciRun(sha, SELF_CHECK_NAME, 'failure', { title: 'Self-check failed', summary: 'OWN-SELF-CHECK-OUTPUT' });
    ciRun(sha, 'ci / lint', 'success', { summary: 'LINT-PASSED' });
    ciRun(sha, 'ci / unit tests', 'failure', { title: `1 test failed ${HOSTILE}`, summary: 'expected 2, got 3', text: `at add (src/add.js:3)\n${HOSTILE}` }, [
      { path: 'src/add.js', line: 3, level: 'failure', title: 'add', message: `returns the wrong sum ${HOSTILE}` },
    ]);

    const own = await deliver(checkRun(pr, branch, sha, SELF_CHECK_NAME), { event: 'check_run' });
    assert.equal(own.status, 200, JSON.stringify(own.body));
    assert.match(own.body.ignored, /own self-check/);
    const other = await deliver(checkRun(pr + 1000, branch, sha, 'ci / unit tests'), { event: 'check_run' });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    assert.match(other.body.ignored, /not octo-org\/hello#/);
    const notAgents = await deliver(checkRun(pr, 'feature/mine', sha, 'ci / unit tests'), { event: 'check_run' });
    assert.equal(notAgents.status, 200, JSON.stringify(notAgents.body));
    assert.match(notAgents.body.ignored, /branch feature\/mine is not a task's/);
    const fork = await deliver(checkRun(pr, branch, sha, 'ci / unit tests', repoId + 1), { event: 'check_run' });
    assert.equal(fork.status, 200, JSON.stringify(fork.body));
    assert.match(fork.body.ignored, /no pull request of the repository itself/);
    const oldSha = crypto.createHash('sha1').update('an older commit').digest('hex');
    const stale = await deliver(checkRun(pr, branch, oldSha, 'ci / unit tests'), { event: 'check_run' });
    assert.equal(stale.status, 200, JSON.stringify(stale.body));
    assert.match(stale.body.ignored, /not of the commit/);
    const passed = checkRun(pr, branch, sha, 'ci / lint');
    passed.check_run.conclusion = 'success';
    assert.match((await deliver(passed, { event: 'check_run' })).body.ignored, /concluded success/);
    assert.equal((await api.task(id)).items.find((i: any) => i.item_id === item.item_id).status, 'pending', 'nothing reached the task');

    const delivery = crypto.randomUUID();
    const failed = await deliver(checkRun(pr, branch, sha, 'ci / unit tests'), { event: 'check_run', delivery });
    assert.equal(failed.status, 202, JSON.stringify(failed.body));
    assert.equal(failed.body.task_id, id);
    const again = await deliver(checkRun(pr, branch, sha, 'ci / unit tests'), { event: 'check_run', delivery });
    assert.equal(again.status, 200, 'a redelivered check run is ignored');
    assert.match(again.body.ignored, /taken already/);
    const resent = await deliver(checkRun(pr, branch, sha, 'ci / unit tests'), { event: 'check_run' });
    assert.equal(resent.status, 200, 'the same failure under a new delivery id is ignored too');
    assert.match(resent.body.ignored, /already/);

    const { view } = await reviewOfRound(id, 2);
    const first = view.items.find((i: any) => i.item_id === item.item_id);
    assert.equal(first.resolution.action, 'request_changes');
    assert.equal(first.resolution.actor, CHECKS_ACTOR);
    const comment: string = first.resolution.comment;
    assert.match(comment, /### ci \/ unit tests \(failure\) https:\/\/github\.com\/octo-org\/hello\/runs\/\d+\n/, 'the check, how it ended, and its page');
    assert.match(comment, /expected 2, got 3/);
    assert.match(comment, /src\/add\.js:3 \(failure\)/);
    assert.match(comment, /returns the wrong sum/);
    assert.ok(!comment.includes('OWN-SELF-CHECK-OUTPUT') && !comment.includes('LINT-PASSED'), comment);
    assertInert(comment, 'the request for changes');
    const decision = (await api.trace(id)).find((e) => e.type === 'decision' && e.actor === CHECKS_ACTOR);
    assert.deepEqual(decision?.data?.checks, ['ci / unit tests']);
    // What reached the agent (its steps' AGENT_FEEDBACK) and the round's commit message, both inert.
    assert.notEqual(view.commit, sha, 'round 2 pushed a new commit');
    const feedback = git(bare, 'show', `${view.commit}:FEEDBACK.md`);
    assert.match(feedback, /ci \/ unit tests[\s\S]*expected 2, got 3/);
    assertInert(feedback, 'the agent’s feedback');
    const message = git(bare, 'log', '-1', '--format=%B', view.commit);
    assert.match(message, /Review feedback \(round 2\)/);
    assertInert(message, 'the commit message');
    assert.equal(github.state.pulls(REPO).length, 1, 'still one pull request');

    // The first commit's checks once more, now that the task pushed another: nothing.
    const late = await deliver(checkRun(pr, branch, sha, 'ci / unit tests'), { event: 'check_run' });
    assert.equal(late.status, 200);
    assert.match(late.body.ignored, /not of the commit/);
    assert.deepEqual(github.violations(), []);
  });

  it('open a health alert instead of another round once the task’s CI rounds are used up; a message on it is one more round', async () => {
    const { id, pr } = task;
    const { view, item } = await reviewOfRound(id, 2);
    ciRun(view.commit, 'ci / unit tests', 'failure', { title: '1 test failed', summary: 'still expected 2, got 4' });
    // A suite GitHub matched to no pull request still names the task's branch.
    const suite = await deliver(checkSuite(`agent/${id}`, view.commit), { event: 'check_suite' });
    assert.equal(suite.status, 202, JSON.stringify(suite.body));
    const alert = await api.nextItem(id, ['health_alert']);
    assert.equal(alert.detail.reason, 'ci_failing');
    assert.deepEqual(alert.detail.checks, ['ci / unit tests']);
    assert.equal(alert.detail.rounds, 1);
    assert.equal(alert.detail.max_rounds, 1);
    assert.equal(alert.detail.pull_request.number, pr);
    let now = await api.task(id);
    assert.equal(now.round, 2, 'no third round without a human');
    assert.equal(now.items.find((i: any) => i.item_id === item.item_id).status, 'pending', 'the review still waits');

    await api.decide(id, alert, { action: 'message', comment: 'Look at how add() carries.' });
    const third = await reviewOfRound(id, 3);
    const second = third.view.items.find((i: any) => i.item_id === item.item_id);
    assert.equal(second.resolution.action, 'request_changes');
    assert.notEqual(second.resolution.actor, CHECKS_ACTOR, 'the human’s round');
    assert.match(second.resolution.comment, /still expected 2, got 4[\s\S]*Look at how add\(\) carries\./);
    now = await api.task(id);
    assert.equal(now.items.find((i: any) => i.item_id === alert.item_id).status, 'resolved');
    assert.deepEqual(github.violations(), []);
    await recordHistory(env.stack.client, id, 'github-ci-rounds-alerted-pending-review');
  });
});

describe('a check that failed before the task could take it', () => {
  it('sends the agent back once as the wait for review starts, though no delivery reached the task', async () => {
    // CI fails on the head the moment the pull request opens: its delivery, if any, came before the task knew the pull request.
    github.state.whenPullOpens(REPO, (pull) => {
      ciRun(pull.head.sha, 'ci / build', 'failure', { title: 'build broke', summary: `EARLY-FAILURE ${HOSTILE}` });
    });
    let id: string;
    try {
      const res = await deliver(labeled(8));
      assert.equal(res.status, 202, JSON.stringify(res.body));
      id = res.body.task_id as string;
      opened.push(id);
      const { view } = await reviewOfRound(id, 2);
      const settled = view.items.find((i: any) => i.kind === 'pr_review' && i.status !== 'pending');
      assert.equal(settled.resolution.action, 'request_changes');
      assert.equal(settled.resolution.actor, CHECKS_ACTOR);
      assert.match(settled.resolution.comment, /### ci \/ build \(failure\)[\s\S]*EARLY-FAILURE/);
      assertInert(settled.resolution.comment, 'the request for changes');
      assert.match(git(bare, 'show', `${view.commit}:FEEDBACK.md`), /EARLY-FAILURE/);
      const early = (await api.trace(id)).filter((e) => e.type === 'forge_event' && /before the review started/.test(e.message));
      assert.equal(early.length, 1, 'taken once');
    } finally {
      github.state.whenPullOpens(REPO, undefined);
    }
    // Round 2's commit has no failing check: read once, and it waits for its review.
    const now = await api.task(id);
    await readAtReview(id, now.commit);
    assert.equal((await api.task(id)).round, 2);
    assert.equal(github.state.pulls(REPO).filter((p) => p.head.ref === `agent/${id}`).length, 1);
    assert.deepEqual(github.violations(), []);
    await recordHistory(env.stack.client, id, 'github-ci-at-review-pending-review');
  });
});

describe('the request for changes failing checks make', () => {
  it('stays within its bound however much the checks print, counting the checks it leaves out', () => {
    const loud = (i: number): FailedCheck => ({
      name: `ci / shard ${i}`, conclusion: 'failure', url: null, title: 'failed', summary: '@'.repeat(2_000), text: '`'.repeat(MAX_CHECK_TEXT_CHARS),
      annotations: Array.from({ length: MAX_CHECK_ANNOTATIONS }, () => ({ path: 'a.js', line: 1, level: 'failure', message: '#1 '.repeat(160) })),
    });
    const text = checksRequest({ head_sha: 'a'.repeat(40), failed: Array.from({ length: MAX_FAILED_CHECKS }, (_, i) => loud(i)), failed_count: 25, pending: 2, read: 40 });
    assert.ok(text.length <= MAX_CHECKS_REQUEST_CHARS, `${text.length} characters`);
    const shown = (text.match(/^### ci \/ shard \d+/gm) ?? []).length;
    assert.ok(shown >= 1 && shown < MAX_FAILED_CHECKS, `${shown} shown`);
    assert.match(text, new RegExp(`\\(${25 - shown} more failing check\\(s\\) not shown\\)`));
    assert.match(text, /\(2 check\(s\) had not finished\)/);
    assertInert(text, 'a long request');
  });
});
