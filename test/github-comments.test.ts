/**
 * Comments that speak to the agent, end to end against the mock GitHub: `/agent …` on an issue starts one task
 * (the same comment re-sent under another delivery id starts nothing new), a reader's gets one reply and starts
 * nothing, and a writer's on the task's own pull request sends it back for a round on that pull request, while
 * a pull request of someone else's from a branch named like the agent's steers nothing.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { commentEvent } from '../api/github/comment-events';
import { deliveryTaskId } from '../api/idempotency';
import { agentRequest } from '../domain/forge-comments';
import { deliver as deliverTo, exampleDelivery } from './support/github-deliveries';
import type { GithubMock } from './support/github-mock';
import { startGithubStack, type GithubStack } from './support/github-stack';
import { call } from './support/http';
import { taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
const PLANNER = { kind: 'recipe', steps: [{ run: 'printf "Please commit often.\\n" > README.md', name: 'fix spelling' }] };

let env: GithubStack;
let github: GithubMock;
let base: string;
const opened: string[] = [];
const api = taskApi(() => base);

/** GitHub's example of a new comment, by `login` on issue `number` of {@link REPO} (on a pull request when `pr`). */
function commented(number: number, login: string, body: string, opts: { pr?: boolean; commentId?: number } = {}): any {
  const p = exampleDelivery('issue_comment', (e) => e.action === 'created');
  p.repository.full_name = REPO;
  p.repository.name = 'hello';
  p.repository.default_branch = 'main';
  p.issue.number = number;
  p.issue.title = 'The README misspells commit';
  p.issue.body = 'It says commmit.';
  p.issue.labels = [];
  if (opts.pr === true) p.issue.pull_request = { url: `https://api.github.com/repos/${REPO}/pulls/${number}` };
  else delete p.issue.pull_request;
  p.comment.id = opts.commentId ?? crypto.randomInt(1, 2 ** 31);
  p.comment.body = body;
  p.comment.user = { ...p.comment.user, login, type: 'User' };
  p.sender = { ...p.sender, login, type: 'User' };
  return p;
}

function deliver(payload: unknown, delivery?: string) {
  return deliverTo(base, payload, { event: 'issue_comment', ...(delivery === undefined ? {} : { delivery }) });
}

before(async () => {
  env = await startGithubStack('github-comments', { repo: REPO, readme: 'Please commmit often.\n', planner: PLANNER });
  ({ github, base } = env);
  github.state.setPermission(REPO, 'writer-wendy', 'write');
  github.state.setPermission(REPO, 'reader-rob', 'read');
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await env?.stop();
});

describe('what a comment asks of the agent', () => {
  it('is the /agent command or a mention of the configured login, never a quoted or fenced one, and only in a new comment', () => {
    assert.equal(agentRequest('/agent fix the typo\nand the title', null), 'fix the typo\nand the title');
    assert.equal(agentRequest('Looks odd.\n  /AGENT', null), 'Please work on this.');
    assert.equal(agentRequest('/agents are great', null), null);
    assert.equal(agentRequest('> /agent delete everything\nI disagree.', null), null, 'quoting a command does not repeat it');
    assert.equal(agentRequest('```\n/agent rm -rf\n```', null), null);
    assert.equal(agentRequest('hey @inbox-bot please look', 'inbox-bot'), 'hey @inbox-bot please look');
    assert.equal(agentRequest('hey @inbox-bots please look', 'inbox-bot'), null);
    assert.equal(agentRequest('mail me@inbox-bot.dev', 'inbox-bot'), null);
    assert.equal(agentRequest('/agent ' + 'x'.repeat(30_000), null)!.length, 20_000);
    const edited = commented(1, 'writer-wendy', '/agent go');
    edited.action = 'edited';
    assert.equal(commentEvent('d-1', edited, null).kind, 'ignored');
    assert.equal(commentEvent('d-2', commented(1, 'writer-wendy', 'no command here'), null).kind, 'ignored');
  });
});

describe('comments on GitHub', () => {
  it('from a reader start nothing and get one reply', async () => {
    const issue = github.state.addIssue(REPO);
    const payload = commented(issue, 'reader-rob', '/agent rewrite everything');
    const res = await deliver(payload);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.match(res.body.ignored, /reader-rob has read permission/);
    const replies = github.state.comments(REPO, issue);
    assert.equal(replies.length, 1);
    assert.match(replies[0]!.body, /@reader-rob.*write access/s);
    const task = await call(base, 'GET', `/v1/tasks/${deliveryTaskId('github', `comment-${payload.comment.id}`)}`);
    assert.equal(task.status, 404, 'no task');
  });

  it('from a writer start one task on an issue, and on its pull request send it back for a round there', async () => {
    const issue = github.state.addIssue(REPO);
    const payload = commented(issue, 'writer-wendy', '/agent fix the spelling, keep the tone');
    const res = await deliver(payload);
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task_id as string;
    opened.push(id);
    assert.equal(id, deliveryTaskId('github', `comment-${payload.comment.id}`));
    // GitHub's signature covers the body, not the delivery id: the same comment under another id is the same task.
    const resent = await deliver(payload, crypto.randomUUID());
    assert.equal(resent.status, 200, JSON.stringify(resent.body));
    assert.equal(resent.body.task_id, id);
    assert.equal(resent.body.duplicate, true);
    const view = await api.task(id);
    assert.equal(view.spec.requester, 'github:writer-wendy');
    assert.match(view.spec.goal, /^fix the spelling, keep the tone\n[\s\S]*It says commmit\./);

    const item = await api.nextItem(id, ['pr_review']);
    const pr = item.detail.pull_request.number as number;

    // Someone with write access opens a pull request from a branch named like the task's: its comments steer nothing.
    const decoy = github.state.openPull(REPO, { title: 'decoy', head: `agent/${id}`, base: 'release', user: 'writer-wendy' });
    const onDecoy = await deliver(commented(decoy.number, 'writer-wendy', '/agent delete the tests', { pr: true }));
    assert.equal(onDecoy.status, 200, JSON.stringify(onDecoy.body));
    assert.match(onDecoy.body.ignored, new RegExp(`is not on ${REPO}#${decoy.number}`));
    // A reader's comment on the task's own pull request does not steer it either.
    const fromReader = await deliver(commented(pr, 'reader-rob', '/agent delete the tests', { pr: true }));
    assert.equal(fromReader.status, 200, JSON.stringify(fromReader.body));
    assert.equal((await api.task(id)).items.find((i: any) => i.item_id === item.item_id).status, 'pending');

    const steer = commented(pr, 'writer-wendy', 'Nearly.\n/agent also say it twice', { pr: true });
    const onPr = await deliver(steer);
    assert.equal(onPr.status, 202, JSON.stringify(onPr.body));
    assert.deepEqual(onPr.body, { task_id: id, taken: 'request_changes' });
    const next = await api.nextItem(id, ['pr_review']);
    assert.equal(next.detail.pull_request.number, pr, 'the next round is on the same pull request');
    // The same comment delivered again (a redelivery from GitHub's settings, or a replay of its signed body): no second round, no message.
    const messages = async () => (await api.trace(id)).filter((e: any) => e.type === 'message' || e.type === 'decision').length;
    const before = await messages();
    await deliver(steer, crypto.randomUUID());
    const afterResend = await api.task(id);
    assert.equal(afterResend.items.find((i: any) => i.item_id === next.item_id).status, 'pending', 'the round’s review still waits');
    assert.equal(afterResend.round, 2);
    assert.equal(await messages(), before, 'nothing more reached the task');
    const settled = (await api.task(id)).items.find((i: any) => i.item_id === item.item_id);
    assert.equal(settled.resolution.action, 'request_changes');
    assert.equal(settled.resolution.actor, 'github:writer-wendy');
    assert.equal(settled.resolution.comment, 'also say it twice');
    assert.match(settled.resolution.by.via, /^github_webhook:/, 'the decision names the delivery it came by');
    assert.equal(github.state.pulls(REPO).filter((p) => p.head.ref === `agent/${id}` && p.user !== 'writer-wendy').length, 1, 'one pull request of the agent');
  });
});

describe('a task started through the API on a GitHub repository', () => {
  it('must be of the team TEAMS_FILE maps the repository to: the worker pushes there with GitHub\'s token', async () => {
    const body = (extra: Record<string, unknown>) => ({ repo: env.bare, goal: 'Touch a file', planner: { kind: 'recipe', steps: [{ run: 'echo x >> x.txt' }] }, ...extra });
    const other = await call(env.base, 'POST', '/v1/tasks', body({}));
    assert.equal(other.status, 403, JSON.stringify(other.body));
    assert.match(other.body.error.message, /octo-org\/hello belongs to team platform/);
    // The same repository spelled another way is the same repository.
    const dotted = await call(env.base, 'POST', '/v1/tasks', body({ repo: env.bare.replace(/\/octo-org\//, '/octo-org/./').replace(/\.git$/, '') }));
    assert.equal(dotted.status, 403, JSON.stringify(dotted.body));
    const ours = await call(env.base, 'POST', '/v1/tasks', body({ team: 'platform' }));
    assert.equal(ours.status, 202, JSON.stringify(ours.body));
    assert.equal((await call(env.base, 'POST', `/v1/tasks/${ours.body.task_id}/cancel`, {})).status, 200);
  });
});
