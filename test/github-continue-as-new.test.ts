/**
 * GitHub tasks across continue-as-new, end to end against the mock GitHub: the dev server suggests continuing as
 * new after {@link SUGGEST_AFTER_EVENTS} history events, so a task hands over to new runs between rounds and while
 * it waits for its merge. What a run took must stay taken (an `/agent` comment re-sent to a later run starts no
 * second round), the merge wait must resume where it was (its refused attempts counted, one merge), and the source
 * issue must keep one status comment. Beside it, a task whose wall-clock cap passes while it waits for its merge
 * ends timed out, unmerged, and says on its pull request that it left it.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { githubRepoUrl } from '../api/github/webhook';
import { startTask } from '../api/start-task';
import { TaskSpec } from '../domain/task';
import { deliver as deliverTo, exampleDelivery, labelledIssue } from './support/github-deliveries';
import { ACTOR_LOGIN, type GithubMock } from './support/github-mock';
import { startGithubStack, type GithubStack } from './support/github-stack';
import { recordHistory } from './support/histories';
import { eventually } from './support/http';
import { taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
const PLANNER = {
  kind: 'recipe',
  steps: [
    { run: 'printf "Please commit often.\\n" > README.md', name: 'fix spelling' },
    { run: 'printf "%s\\n" "${AGENT_FEEDBACK:-none}" > FEEDBACK.md', name: 'note the feedback' },
  ],
};
/** History events after which the dev server suggests continuing as new: a round or a few merge attempts. */
const SUGGEST_AFTER_EVENTS = 40;
/** Merge attempts GitHub refuses (required checks pending) before it allows one. */
const HELD_ATTEMPTS = 3;
/** The wall-clock cap of the task that runs out of time while it waits for its merge. */
const CAP_MINUTES = 0.5;

let env: GithubStack;
let github: GithubMock;
let base: string;
const opened: string[] = [];
const api = taskApi(() => base);

/** GitHub's example of a new comment by `login` on pull request `number`. */
function commentOnPr(number: number, login: string, body: string): any {
  const p = exampleDelivery('issue_comment', (e) => e.action === 'created');
  p.repository.full_name = REPO;
  p.repository.name = 'hello';
  p.repository.default_branch = 'main';
  p.issue.number = number;
  p.issue.labels = [];
  p.issue.pull_request = { url: `https://api.github.com/repos/${REPO}/pulls/${number}` };
  p.comment.id = crypto.randomInt(1, 2 ** 31);
  p.comment.body = body;
  p.comment.user = { ...p.comment.user, login, type: 'User' };
  p.sender = { ...p.sender, login, type: 'User' };
  return p;
}

async function runId(id: string): Promise<string> {
  return (await env.stack.client.workflow.getHandle(id).describe()).runId;
}

function pendingReview(t: any): any {
  return t.items.find((i: any) => i.kind === 'pr_review' && i.status === 'pending');
}

before(async () => {
  env = await startGithubStack('github-can', {
    repo: REPO,
    readme: 'Please commmit often.\n',
    planner: PLANNER,
    env: { GITHUB_MERGE_ON_APPROVE: 'squash' },
    temporalArgs: ['--dynamic-config-value', `limit.historyCount.suggestContinueAsNew=${SUGGEST_AFTER_EVENTS}`],
  });
  ({ github, base } = env);
  github.state.setPermission(REPO, 'writer-wendy', 'write');
  while (!github.state.hasIssue(REPO, 2)) github.state.addIssue(REPO);
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await env?.stop();
});

describe('a GitHub task over several runs', { concurrency: true }, () => {
  it('takes an /agent comment once, resumes its merge wait where it was, and keeps one status comment on its issue', async () => {
    const res = await deliverTo(base, labelledIssue(REPO, 1));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task_id as string;
    opened.push(id);
    const first = await api.nextItem(id, ['pr_review']);
    const pr = first.detail.pull_request.number as number;
    const tookComment = await runId(id);

    const steer = commentOnPr(pr, 'writer-wendy', '/agent say it twice');
    const taken = await deliverTo(base, steer, { event: 'issue_comment' });
    assert.deepEqual(taken.body, { task_id: id, taken: 'request_changes' });
    const second = await eventually(() => api.task(id), (t) => t.round === 2 && pendingReview(t) !== undefined, 'round 2 up for review', 60_000);
    assert.notEqual(await runId(id), tookComment, 'the task continued as new after it took the comment');
    // The same comment again (a redelivery, or a replay of its signed body) reaches a run that never saw its Update id.
    const resent = await deliverTo(base, steer, { event: 'issue_comment', delivery: crypto.randomUUID() });
    assert.equal(resent.status, 200, JSON.stringify(resent.body));
    assert.match(resent.body.ignored, /taken already/);
    const still = await api.task(id);
    assert.equal(still.round, 2, 'no second round from one comment');
    assert.equal(pendingReview(still)?.item_id, pendingReview(second).item_id);

    github.state.holdMerges(REPO, pr, HELD_ATTEMPTS);
    await api.decide(id, pendingReview(second), { action: 'approve' });
    await eventually(() => api.task(id), (t) => t.state === 'awaiting_merge', 'waiting for the merge');
    const waitedIn = await runId(id);
    const done = await api.ended(id);
    assert.equal(done.state, 'done', done.result);
    await env.stack.client.workflow.getHandle(id).result();
    assert.notEqual(await runId(id), waitedIn, 'the merge wait continued as new');
    const approved = second.commit as string;
    assert.deepEqual(github.state.merges(REPO).filter((m) => m.number === pr).map((m) => m.sha), [approved], 'merged once, at the approved commit');
    const trace = await api.trace(id);
    const refused = trace.filter((e) => /will not merge .* yet/.test(e.message));
    assert.deepEqual(refused.map((e) => e.data?.attempt), Array.from({ length: HELD_ATTEMPTS }, (_, i) => i + 1), 'attempts counted on across runs, each once');
    assert.equal(trace.filter((e) => e.type === 'awaiting_merge').length, 1, 'the wait traced once');
    assert.equal(trace.filter((e) => e.type === 'decision' && e.data?.action === 'request_changes').length, 1);
    const runs: string[] = [];
    for await (const run of env.stack.client.workflow.list({ query: `WorkflowId = '${id}'` })) runs.push(run.status.name);
    assert.ok(runs.filter((s) => s === 'CONTINUED_AS_NEW').length >= 2, runs.join(', '));
    // The issue: one status comment, edited in place by every run, and the done label.
    const status = github.state.comments(REPO, 1).filter((c) => c.user === ACTOR_LOGIN);
    assert.equal(status.length, 1, 'one status comment across runs');
    assert.match(status[0]!.body, /`agent:done`/);
    assert.deepEqual(github.state.labels(REPO, 1).filter((l) => l.startsWith('agent:')), ['agent:done']);
    assert.deepEqual(github.violations(), []);
    // The last run: it resumed a merge wait another run began.
    await recordHistory(env.stack.client, id, 'github-merge-wait-resumed-merged');
  });

  it('ends timed out when its wall-clock cap passes while it waits for its merge: unmerged, and it says so on the pull request', async () => {
    // As intake starts a labelled issue's task, with a cap short enough to pass while GitHub holds the merge.
    const spec = TaskSpec.parse({
      repo: githubRepoUrl(env.workerEnv.GITHUB_GIT_BASE!, REPO),
      base_branch: 'main',
      goal: 'Fix the spelling in the README',
      planner: PLANNER,
      budget: { max_wall_clock_minutes: CAP_MINUTES },
      requester: 'github:octocat',
    });
    const id = `t-${crypto.randomBytes(16).toString('hex')}`;
    opened.push(id);
    await startTask({ client: env.stack.client, taskQueue: env.queue }, {
      taskId: id,
      spec: { ...spec, team: 'platform' },
      requestedBy: { subject: 'github:octocat', name: 'octocat', team: 'platform', via: 'github_webhook:test' },
      source: { forge: 'github', repo: REPO, issue: 2, delivery_id: crypto.randomUUID(), max_ci_rounds: 3, merge_method: 'squash' },
    });
    const item = await api.nextItem(id, ['pr_review']);
    const pr = item.detail.pull_request.number as number;
    github.state.holdMerges(REPO, pr, 1_000);
    await api.decide(id, item, { action: 'approve' });
    await eventually(() => api.task(id), (t) => t.state === 'awaiting_merge', 'waiting for the merge');
    const ended = await api.ended(id);
    assert.equal(ended.state, 'timed_out', ended.result);
    await env.stack.client.workflow.getHandle(id).result();
    const pull = github.state.pull(REPO, pr)!;
    assert.deepEqual([pull.state, pull.merged], ['open', false], 'left open, unmerged');
    assert.deepEqual(github.state.merges(REPO).filter((m) => m.number === pr), []);
    const left = github.state.comments(REPO, pr).filter((c) => /The task ended timed out/.test(c.body));
    assert.equal(left.length, 1, JSON.stringify(github.state.comments(REPO, pr)));
    assert.match(left[0]!.body, /approved in the Agent Inbox by .+ no longer merges or changes this pull request/);
    assert.match(github.state.comments(REPO, 2).find((c) => c.user === ACTOR_LOGIN)?.body ?? '', /ended \(timed out\)/);
    assert.deepEqual(github.state.labels(REPO, 2).filter((l) => l.startsWith('agent:')), []);
    assert.deepEqual(github.violations(), []);
    await recordHistory(env.stack.client, id, 'github-merge-wait-timed-out-left-open');
  });
});
