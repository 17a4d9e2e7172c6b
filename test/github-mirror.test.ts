/**
 * A task's source issue mirroring it: the real Octokit client against the GitHub mock (every call checked by
 * Prism against GitHub's OpenAPI description). One `agent:*` label at a time, human labels untouched, one status
 * comment edited in place and found again after a crash, never a stranger's, and nothing in it that pings.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MIRROR_LABELS, mirrorOf, statusMarker, type IssueMirror, type MirrorSource } from '../domain/forge-mirror';
import { createPullRequestActivities } from '../activities/github/activities';
import { githubClients, MAX_TRANSIENT_RETRIES } from '../activities/github/client';
import { githubIssues } from '../activities/github/issues';
import type { PullRequestActivities } from '../activities/types';
import type { Logger } from '../workers/log';
import { ACTOR_LOGIN, startGithubMock, type GithubMock } from './support/github-mock';

const REPO = 'octo-org/mirror';
const PUBLIC_URL = 'https://inbox.example';
/** One unit of the plugins' backoff in tests: their 1-4-9 unit waits become milliseconds. */
const RETRY_UNIT_MS = 5;
const TOKEN = `ghp_${crypto.randomBytes(18).toString('hex')}`;
const PR = { number: 42, url: `https://github.example/${REPO}/pull/42` };
/** Labels a human put on the issue, some of them close to the backend's own names. */
const HUMAN_LABELS = ['bug', 'agent', 'agent:blocked', 'agent: done', 'agent:done-ish', 'needs-input'];

let mock: GithubMock;
let acts: PullRequestActivities;
const logLines: string[] = [];

const log: Logger = Object.fromEntries(
  (['debug', 'info', 'warn', 'error'] as const).map((level) => [level, (msg: string, attrs?: Record<string, unknown>) => logLines.push(JSON.stringify({ level, msg, ...attrs }))]),
) as unknown as Logger;

/** The mirror of a task in `state` with `pending` items, its pull request open or not. */
function mirror(state: MirrorSource['state'], pending: MirrorSource['pending'] = [], extra: Partial<MirrorSource> = {}): IssueMirror {
  return mirrorOf({ state, round: 1, pending, result: null, ...extra });
}

/** The issue's labels of the backend's own five, lower case (as GitHub compares them). */
function agentLabels(issue: number): string[] {
  return mock.state.labels(REPO, issue).map((l) => l.toLowerCase()).filter((l) => (MIRROR_LABELS as readonly string[]).includes(l));
}

describe('the source issue mirroring its task', () => {
  before(async () => {
    mock = await startGithubMock();
    mock.state.addRepo(REPO);
    const clients = githubClients({ apiUrl: mock.apiUrl, auth: { kind: 'token', token: TOKEN } }, { log, paceWrites: false, retryUnitMs: RETRY_UNIT_MS });
    const issues = githubIssues((repo) => clients.octokitFor(repo), { selfLogin: () => clients.selfLogin(), publicUrl: PUBLIC_URL, log });
    acts = createPullRequestActivities(null, issues);
  });

  after(async () => {
    await mock?.stop();
  });

  it('keeps exactly one agent label through the task\'s states, never touching a human\'s, and none once it ended other than done', async () => {
    const issue = mock.state.addIssue(REPO);
    // A stale label of ours in another case is still ours (GitHub compares label names without case).
    mock.state.labels(REPO, issue).push(...HUMAN_LABELS, 'Agent:Queued');
    const sequence: [IssueMirror, string | null][] = [
      [mirror('queued'), 'agent:queued'],
      [mirror('running'), 'agent:working'],
      [mirror('awaiting_answer', [{ kind: 'clarification', title: 'Which file?' }]), 'agent:needs-input'],
      [mirror('running'), 'agent:working'],
      [mirror('pr_open', [{ kind: 'pr_review', title: 'Review' }], { pr: { ...PR, open: true } }), 'agent:pr-open'],
      [mirror('pr_open', [{ kind: 'pr_review', title: 'Review' }, { kind: 'health_alert', title: 'Stuck' }], { pr: { ...PR, open: true } }), 'agent:needs-input'],
      [mirror('changes_requested', [], { pr: { ...PR, open: true } }), 'agent:working'],
      [mirror('awaiting_merge', [], { pr: { ...PR, open: true } }), 'agent:pr-open'],
      [mirror('awaiting_merge', [{ kind: 'health_alert', title: 'Not merged' }], { pr: { ...PR, open: true } }), 'agent:needs-input'],
      [mirror('done', [], { pr: { ...PR, open: false }, result: 'pull request #42 merged' }), 'agent:done'],
    ];
    let comment_id: number | undefined;
    for (const [m, label] of sequence) {
      ({ comment_id } = await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-labels', mirror: m, ...(comment_id === undefined ? {} : { comment_id }) }));
      assert.deepEqual(agentLabels(issue), label === null ? [] : [label], `after ${m.state}`);
      assert.deepEqual(mock.state.labels(REPO, issue).filter((l) => HUMAN_LABELS.includes(l)), HUMAN_LABELS, `human labels intact after ${m.state}`);
    }
    // The same mirror again writes no label.
    const before = mock.state.requests.length;
    await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-labels', mirror: sequence.at(-1)![0], comment_id });
    const again = mock.state.requests.slice(before).filter((r) => r.path.includes('/labels') && r.method !== 'GET');
    assert.deepEqual(again, [], 'nothing to change, nothing written');

    const other = mock.state.addIssue(REPO);
    mock.state.labels(REPO, other).push('bug', 'agent:working');
    const rejected = mirror('rejected', [], { result: 'pull request rejected by alice' });
    assert.equal(rejected.label, null);
    await acts.mirrorIssue({ repo: REPO, issue: other, task_id: 't-rejected', mirror: rejected });
    assert.deepEqual(mock.state.labels(REPO, other), ['bug']);
    assert.match(mock.state.comments(REPO, other)[0]!.body, /ended \(rejected\)[\s\S]*Ended rejected: pull request rejected by alice/);
  });

  it('a label already removed by someone else is no failure', async () => {
    const issue = mock.state.addIssue(REPO);
    mock.state.labels(REPO, issue).push('agent:queued');
    mock.state.failNext('DELETE', `/repos/${REPO}/issues/${issue}/labels/{name}`, 404);
    await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-gone', mirror: mirror('running') });
    // The planned 404 answered instead of the removal: the label stays, and the next write takes it off.
    assert.deepEqual(agentLabels(issue).sort(), ['agent:queued', 'agent:working']);
    await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-gone', mirror: mirror('running') });
    assert.deepEqual(agentLabels(issue), ['agent:working']);
  });

  it('edits one status comment across many updates, finds it again without its id after a crash, and never edits a stranger\'s carrying the marker', async () => {
    const issue = mock.state.addIssue(REPO);
    const taskId = 't-comment';
    // Anyone can post the marker: the backend must not take that comment for its own.
    const stranger = mock.state.addComment(REPO, issue, `${statusMarker(taskId)}\nI am the status now @octo-org/owners`, 'mallory');
    mock.state.addComment(REPO, issue, 'A human\'s comment.', 'octocat');

    const first = await acts.mirrorIssue({ repo: REPO, issue, task_id: taskId, mirror: mirror('queued') });
    assert.notEqual(first.comment_id, stranger.id);
    const second = await acts.mirrorIssue({ repo: REPO, issue, task_id: taskId, mirror: mirror('running'), comment_id: first.comment_id });
    assert.equal(second.comment_id, first.comment_id);
    // A crash lost the id the first write returned: the comment is found by its marker and author.
    for (const state of ['planning', 'running'] as const) {
      const found = await acts.mirrorIssue({ repo: REPO, issue, task_id: taskId, mirror: mirror(state) });
      assert.equal(found.comment_id, first.comment_id);
    }
    const done = await acts.mirrorIssue({ repo: REPO, issue, task_id: taskId, mirror: mirror('done', [], { pr: { ...PR, open: false }, result: 'merged' }) });
    assert.equal(done.comment_id, first.comment_id);

    const comments = mock.state.comments(REPO, issue);
    const ours = comments.filter((c) => c.user === ACTOR_LOGIN);
    assert.equal(ours.length, 1, 'one status comment');
    assert.ok(ours[0]!.body.startsWith(statusMarker(taskId)));
    assert.match(ours[0]!.body, /`agent:done`/);
    assert.ok(ours[0]!.body.includes(`${PUBLIC_URL}/tasks/${taskId}`), 'it links the task in the inbox');
    assert.ok(ours[0]!.body.includes(PR.url), 'it links the pull request');
    assert.equal(comments.find((c) => c.id === stranger.id)!.body, `${statusMarker(taskId)}\nI am the status now @octo-org/owners`, 'the stranger\'s comment is untouched');
    assert.equal(mock.state.requests.filter((r) => r.method === 'PATCH' && r.path === `/repos/${REPO}/issues/comments/${stranger.id}`).length, 0);
  });

  it('posts the status comment again when the known one was deleted', async () => {
    const issue = mock.state.addIssue(REPO);
    const { comment_id } = await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-deleted', mirror: mirror('queued') });
    const all = mock.state.allComments(REPO);
    all.splice(all.findIndex((c) => c.id === comment_id), 1);
    const again = await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-deleted', mirror: mirror('running'), comment_id });
    assert.notEqual(again.comment_id, comment_id);
    assert.equal(mock.state.comments(REPO, issue).length, 1);
  });

  it('renders a hostile headline inert: no mention, no issue reference or closing keyword, no fold', async () => {
    const issue = mock.state.addIssue(REPO);
    const hostile = 'Fixes #1 for @org/team and @alice </details><details><summary>x</summary> closes octo-org/other#2';
    const m = mirror('awaiting_approval', [{ kind: 'risky_action', title: hostile }]);
    assert.equal(m.label, 'agent:needs-input');
    await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-hostile', mirror: m });
    const body = mock.state.comments(REPO, issue)[0]!.body;
    assert.ok(!/@[A-Za-z0-9]/.test(body), `no mention: ${body}`);
    assert.ok(!/#\d/.test(body), `no issue reference: ${body}`);
    assert.ok(!/\b(fixes|closes)\b/i.test(body), `no closing keyword: ${body}`);
    assert.ok(!/<\/?(details|summary)\b/i.test(body), `no fold: ${body}`);
    assert.ok(body.length < 1_000, 'a bounded comment');
  });

  it('fails not retryably on a refusal and retryably when GitHub keeps failing, with no token in either', async () => {
    const missing = await acts.mirrorIssue({ repo: REPO, issue: 9_999, task_id: 't-missing', mirror: mirror('queued') }).then(
      () => assert.fail('expected a refusal'),
      (e: unknown) => e,
    );
    assert.ok(missing instanceof ApplicationFailure);
    assert.equal(missing.type, 'ForgeRefused');
    assert.equal(missing.nonRetryable, true);

    const issue = mock.state.addIssue(REPO);
    mock.state.failNext('GET', `/repos/${REPO}/issues/${issue}/labels`, 502, MAX_TRANSIENT_RETRIES + 1);
    const failing = await acts.mirrorIssue({ repo: REPO, issue, task_id: 't-502', mirror: mirror('queued') }).then(
      () => assert.fail('expected a failure'),
      (e: unknown) => e,
    );
    assert.ok(failing instanceof ApplicationFailure);
    assert.equal(failing.type, 'ForgeFailed');
    assert.equal(failing.nonRetryable, false);

    const none = await createPullRequestActivities(null).mirrorIssue({ repo: REPO, issue, task_id: 't-none', mirror: mirror('queued') }).then(
      () => assert.fail('expected a refusal'),
      (e: unknown) => e,
    );
    assert.ok(none instanceof ApplicationFailure && none.type === 'ForgeRefused');

    for (const text of [missing.message, failing.message, ...logLines, ...mock.state.allComments(REPO).map((c) => c.body)]) {
      assert.equal(text.includes(TOKEN), false, text);
    }
    assert.deepEqual(mock.violations(), []);
  });
});
