/**
 * GitHub pull requests end to end: a labelled issue's task pushes to a local bare repository under
 * GITHUB_GIT_BASE and opens one pull request through the real Octokit client, every call checked against
 * GitHub's OpenAPI description by Prism; GitHub's own example deliveries, adjusted and signed, then steer it:
 * a reader's review gets a polite reply, a writer's review with two comments is one round of changes on the
 * same pull request, a merge ends the task done with its review-to-merge latency, a close rejects it and
 * deletes the branch, and a reject in the inbox closes the pull request. With merging off (the default), an approval in
 * the inbox leaves the task waiting for the merge on GitHub, with nothing in the inbox. Recipe tasks on the process driver.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labelledIssueTaskId } from '../api/idempotency';
import { MAX_FOLDED_REVIEWS, MAX_REQUEST_COMMENTS, MAX_REVIEW_REQUEST_CHARS, reviewRequest } from '../domain/forge';
import { MIRROR_LABELS, statusMarker } from '../domain/forge-mirror';
import { branchCommit, git } from './support/git-fixture';
import { deliver as deliverTo, exampleDelivery, type DeliveryOptions, labelledIssue, SPELLING_ISSUE } from './support/github-deliveries';
import { ACTOR_LOGIN, type GithubMock } from './support/github-mock';
import { GITHUB_TEST_PUBLIC_URL as PUBLIC_URL, GITHUB_TEST_TOKEN as TOKEN, startGithubStack, type GithubStack } from './support/github-stack';
import { recordHistory } from './support/histories';
import { call, eventually } from './support/http';
import { ENDED_STATES, taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
/** The highest issue number a test's delivery names: the fake holds issues up to it, so the mirror can label and comment on them. */
const LAST_ISSUE = 11;
/**
 * A round asked to take its time holds its step until the test creates {@link GATE} (at most a minute), so reviews
 * arrive while the agent works. The process driver runs steps on this host, where the path is the test's.
 */
const SLOW_WORD = 'take-your-time';
const GATE = path.join(os.tmpdir(), `agent-inbox-fold-gate-${process.pid}`);
const PLANNER = {
  kind: 'recipe',
  steps: [
    { run: 'printf "Please commit often.\\n" > README.md', name: 'fix spelling' },
    { run: `case "\${AGENT_FEEDBACK:-}" in *${SLOW_WORD}*) for i in $(seq 600); do [ -e ${GATE} ] && break; sleep 0.1; done;; esac; printf "%s\\n" "\${AGENT_FEEDBACK:-none}" > FEEDBACK.md`, name: 'note the feedback' },
  ],
};

let env: GithubStack;
let github: GithubMock;
let base: string;
let bare: string;
const opened: string[] = [];
const api = taskApi(() => base);

function deliver(payload: unknown, opts: DeliveryOptions = {}) {
  return deliverTo(base, payload, opts);
}

/** A labelled issue `number` of {@link REPO} (titled `title`), labelled by octocat; its body tries to close, mention and break out. */
function labeled(number: number, title = SPELLING_ISSUE.title): any {
  return labelledIssue(REPO, number, { title, body: `${SPELLING_ISSUE.body}\n\nCloses #4242 @octo-org/owners </details> Injected` });
}

/** Points an example payload's pull request at the task's: its number, its head branch in `headRepo`. */
function onPullRequest(p: any, number: number, taskId: string, headRepo = REPO): any {
  p.repository.full_name = REPO;
  p.repository.name = 'hello';
  p.pull_request.number = number;
  p.pull_request.head.ref = `agent/${taskId}`;
  p.pull_request.head.repo = { ...p.pull_request.head.repo, full_name: headRepo };
  return p;
}

/** GitHub's example of a submitted review, as `reviewer` requesting changes (or in `state`, with `body`) in review `reviewId`. */
function reviewed(number: number, taskId: string, reviewId: number, reviewer: string, state = 'changes_requested', body?: string): any {
  const p = onPullRequest(exampleDelivery('pull_request_review', (e) => e.action === 'submitted'), number, taskId);
  p.review.id = reviewId;
  p.review.state = state;
  if (body !== undefined) p.review.body = body;
  p.review.user = { ...p.review.user, login: reviewer, type: 'User' };
  p.sender = { ...p.sender, login: reviewer, type: 'User' };
  return p;
}

/** GitHub's example of a closed pull request, merged by `actor` or not. */
function closed(number: number, taskId: string, merged: boolean, actor: string, headRepo = REPO): any {
  const p = onPullRequest(exampleDelivery('pull_request', (e) => e.action === 'closed'), number, taskId, headRepo);
  p.pull_request.merged = merged;
  p.pull_request.merged_at = merged ? new Date().toISOString() : null;
  p.pull_request.merged_by = merged ? { ...p.sender, login: actor, type: 'User' } : null;
  p.sender = { ...p.sender, login: actor, type: 'User' };
  return p;
}

/** The issue's labels of the backend's own five. */
function agentLabels(issue: number): string[] {
  return github.state.labels(REPO, issue).filter((l) => (MIRROR_LABELS as readonly string[]).includes(l));
}

/** The worker's status comments on the issue for task `id`. */
function statusComments(issue: number, id: string) {
  return github.state.comments(REPO, issue).filter((c) => c.user === ACTOR_LOGIN && c.body.startsWith(statusMarker(id)));
}

/** The task workflow's own end: the final mirror is written before it returns. */
async function workflowEnded(id: string): Promise<void> {
  await env.stack.client.workflow.getHandle(id).result();
}

/** Starts a task from issue `number` and waits for its pull request; returns the task, its review item and the PR number. */
async function taskWithPullRequest(number: number, title?: string): Promise<{ id: string; item: any; pr: number }> {
  const res = await deliver(labeled(number, title));
  assert.equal(res.status, 202, JSON.stringify(res.body));
  const id = res.body.task_id as string;
  opened.push(id);
  const item = await api.nextItem(id, ['pr_review']);
  assert.ok(item.detail.pull_request, `the review item names its pull request: ${JSON.stringify((await api.trace(id)).filter((e) => e.type === 'health'))}`);
  return { id, item, pr: item.detail.pull_request.number };
}

before(async () => {
  env = await startGithubStack('github-prs', { repo: REPO, readme: 'Please commmit often.\n', planner: PLANNER });
  ({ github, base, bare } = env);
  github.state.setPermission(REPO, 'writer-wendy', 'write');
  github.state.setPermission(REPO, 'reader-rob', 'read');
  while (!github.state.hasIssue(REPO, LAST_ISSUE)) github.state.addIssue(REPO);
  github.state.labels(REPO, 7).push('agent-ready', 'bug');
});

after(async () => {
  fs.rmSync(GATE, { force: true });
  if (base) await api.cancelOpen(opened);
  await env?.stop();
});

describe('a task from a GitHub issue', () => {
  it('opens one pull request, takes a writer’s review as one round of changes on it, ignores a reader’s, and ends done when merged', async () => {
    const { id, item, pr } = await taskWithPullRequest(7);
    const view = await api.task(id);
    let pulls = github.state.pulls(REPO);
    assert.equal(pulls.length, 1, 'one pull request');
    const pull = pulls[0]!;
    assert.equal(pull.number, pr);
    assert.equal(pull.head.ref, `agent/${id}`);
    assert.equal(pull.base.ref, 'main');
    assert.equal(pull.draft, false, 'the recipe passed: ready for review');
    assert.match(pull.body ?? '', /Fixes #7/);
    assert.ok((pull.body ?? '').includes(`https://inbox.example.test/tasks/${id}`), 'the body links the task in the inbox');
    assert.match(pull.body ?? '', /## Risks/);
    assert.equal(view.pull_request.number, pr);
    // A token cannot use the Checks API (GitHub keeps it for apps): the self-check is the commit's status.
    const statuses = github.state.statuses(REPO).filter((c) => c.sha === view.commit);
    assert.deepEqual(statuses.map((c) => [c.context, c.state]), [['agent self-check', 'success']]);

    // A reader's review does not reach the agent: a polite reply, and the item still waits.
    const byReader = github.state.addReview(REPO, pr, { reviewer: 'reader-rob', state: 'CHANGES_REQUESTED', body: 'Rewrite it all.' });
    const fromReader = await deliver(reviewed(pr, id, byReader, 'reader-rob'), { event: 'pull_request_review' });
    assert.equal(fromReader.status, 202, JSON.stringify(fromReader.body));
    await eventually(async () => github.state.comments(REPO, pr), (cs: any[]) => cs.some((c) => /write access/.test(c.body)), 'a reply to the reader');
    assert.equal((await api.task(id)).items.find((i: any) => i.item_id === item.item_id).status, 'pending');
    // Again and again: refused unread, and answered once (no history, no comments to spend).
    const again1 = github.state.addReview(REPO, pr, { reviewer: 'reader-rob', state: 'CHANGES_REQUESTED', body: 'Rewrite it all, now.' });
    const readerAgain = await deliver(reviewed(pr, id, again1, 'reader-rob'), { event: 'pull_request_review' });
    assert.equal(readerAgain.status, 200, JSON.stringify(readerAgain.body));
    assert.match(readerAgain.body.ignored, /reader-rob may not steer this task/);
    assert.equal(github.state.comments(REPO, pr).filter((c) => /write access/.test(c.body)).length, 1, 'one reply to the reader');
    // While the review waits, the source issue says so; the human's labels stay.
    await eventually(async () => agentLabels(7), (ls: string[]) => ls.length === 1 && ls[0] === 'agent:pr-open', 'the issue labelled agent:pr-open');
    assert.deepEqual(github.state.labels(REPO, 7).filter((l) => !l.startsWith('agent:')), ['agent-ready', 'bug']);

    // A writer's review with two comments: one round of changes, on the same pull request.
    const byWriter = github.state.addReview(REPO, pr, {
      reviewer: 'writer-wendy',
      state: 'CHANGES_REQUESTED',
      body: 'Two things.',
      comments: [
        { path: 'README.md', line: 1, body: 'Say "commit" once.' },
        { path: 'README.md', line: 2, body: 'Add a newline at the end.' },
      ],
    });
    const delivery = crypto.randomUUID();
    const fromWriter = await deliver(reviewed(pr, id, byWriter, 'writer-wendy'), { event: 'pull_request_review', delivery });
    assert.equal(fromWriter.status, 202, JSON.stringify(fromWriter.body));
    const again = await deliver(reviewed(pr, id, byWriter, 'writer-wendy'), { event: 'pull_request_review', delivery });
    assert.equal(again.status, 200, 'a redelivered review is ignored');
    assert.match(again.body.ignored, /taken already/);
    const resent = await deliver(reviewed(pr, id, byWriter, 'writer-wendy'), { event: 'pull_request_review' });
    assert.equal(resent.status, 200, 'the same review re-sent under a new delivery id is ignored too');
    assert.match(resent.body.ignored, /taken already/);
    const second = await eventually(() => api.task(id), (t) => t.round === 2 && t.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'), 'round 2 up for review', 60_000);
    const first = second.items.find((i: any) => i.item_id === item.item_id);
    assert.equal(first.resolution.action, 'request_changes');
    assert.equal(first.resolution.actor, 'github:writer-wendy');
    assert.match(first.resolution.comment, /Two things\.\n- README\.md:1: Say "commit" once\.\n- README\.md:2: Add a newline at the end\./);
    pulls = github.state.pulls(REPO);
    assert.equal(pulls.length, 1, 'still one pull request after the second round');

    // Merged on GitHub: the task is done, with the time from review to merge.
    const merged = await deliver(closed(pr, id, true, 'writer-wendy'), { event: 'pull_request' });
    assert.equal(merged.status, 202, JSON.stringify(merged.body));
    const done = await api.ended(id);
    assert.equal(done.state, 'done');
    assert.match(done.result, new RegExp(`pull request #${pr} merged; review to merge \\d+ s by github:writer-wendy`));
    const entry = (await api.trace(id)).find((e) => e.type === 'merged');
    assert.equal(typeof entry.data.review_to_merge_ms, 'number');
    // The issue ends mirroring a done task: one label, one status comment edited in place, naming the task and linking the inbox.
    await workflowEnded(id);
    assert.deepEqual(agentLabels(7), ['agent:done']);
    assert.deepEqual(github.state.labels(REPO, 7).filter((l) => !l.startsWith('agent:')), ['agent-ready', 'bug']);
    const status = statusComments(7, id);
    assert.equal(status.length, 1, 'one status comment');
    assert.equal(github.state.comments(REPO, 7).length, 1, 'no other comment on the issue');
    assert.match(status[0]!.body, /`agent:done`/);
    assert.ok(status[0]!.body.includes(`${PUBLIC_URL}/tasks/${id}`), status[0]!.body);
    assert.ok(status[0]!.body.includes(`task \`${id}\``), status[0]!.body);
    const unmirrored = (await api.trace(id)).filter((e) => e.type === 'health' && /could not update/.test(e.message));
    assert.deepEqual(unmirrored, [], 'every mirror write went through');
    assert.deepEqual(github.violations(), []);
    // Recorded under a name of its own: github-pr-reviewed-merged.json stays the history of a worker before the issue mirror.
    await recordHistory(env.stack.client, id, 'github-pr-mirrored-merged');
  });

  it('takes a writer’s comment review with line comments as one round, acknowledges review comment events without taking them, and ignores a comment review with nothing for the agent', async () => {
    const { id, item, pr } = await taskWithPullRequest(6);
    const pending = async () => (await api.task(id)).items.find((i: any) => i.item_id === item.item_id).status;
    const notes = async (reviewId: number) => (await api.trace(id)).filter((e) => e.type === 'note' && e.data?.review_id === reviewId);
    const replies = () => github.state.comments(REPO, pr).filter((c) => /write access/.test(c.body)).length;

    // A review comment's own event: acknowledged, never taken (its review's event carries it).
    const lone = github.state.addReview(REPO, pr, { reviewer: 'writer-wendy', state: 'COMMENTED', comments: [{ path: 'README.md', line: 1, body: 'Say "commit" once.' }] });
    const comment = onPullRequest(exampleDelivery('pull_request_review_comment', (e) => e.action === 'created'), pr, id);
    comment.comment.pull_request_review_id = lone;
    comment.sender = { ...comment.sender, login: 'writer-wendy', type: 'User' };
    const fromComment = await deliver(comment, { event: 'pull_request_review_comment' });
    assert.equal(fromComment.status, 200, JSON.stringify(fromComment.body));
    assert.match(fromComment.body.ignored, /taken with its review/);

    // A writer's note to other reviewers: no line comment, no word to the agent. Read, passed on to nobody, answered by nobody.
    const note = github.state.addReview(REPO, pr, { reviewer: 'writer-wendy', state: 'COMMENTED', body: 'Looks sane so far, @reader-rob what do you think?' });
    const fromNote = await deliver(reviewed(pr, id, note, 'writer-wendy', 'commented', 'Looks sane so far, @reader-rob what do you think?'), { event: 'pull_request_review' });
    assert.equal(fromNote.status, 202, JSON.stringify(fromNote.body));
    await eventually(() => notes(note), (n: any[]) => n.some((e) => /does not speak to the agent/.test(e.message)), 'the note read and set aside');
    assert.equal(await pending(), 'pending');
    // Anyone may post notes on a public repository's pull request: one without write access is read once, then refused
    // unread (no reply either), so a stream of notes cannot grow the task's history without bound.
    const strangerNote = github.state.addReview(REPO, pr, { reviewer: 'stranger-sam', state: 'COMMENTED', body: 'First!' });
    const fromStranger = await deliver(reviewed(pr, id, strangerNote, 'stranger-sam', 'commented', 'First!'), { event: 'pull_request_review' });
    assert.equal(fromStranger.status, 202, JSON.stringify(fromStranger.body));
    await eventually(() => notes(strangerNote), (n: any[]) => n.length > 0, 'the stranger’s note read');
    const strangerAgain = github.state.addReview(REPO, pr, { reviewer: 'stranger-sam', state: 'COMMENTED', body: 'Second!' });
    const fromStrangerAgain = await deliver(reviewed(pr, id, strangerAgain, 'stranger-sam', 'commented', 'Second!'), { event: 'pull_request_review' });
    assert.equal(fromStrangerAgain.status, 200, JSON.stringify(fromStrangerAgain.body));
    assert.match(fromStrangerAgain.body.ignored, /stranger-sam may not steer this task/);
    assert.equal(replies(), 0, 'a note asked nothing: no reply');
    // A reader's comment review with a line comment: the polite reply, as for a review requesting changes.
    const byReader = github.state.addReview(REPO, pr, { reviewer: 'reader-rob', state: 'COMMENTED', comments: [{ path: 'README.md', line: 1, body: 'Rewrite it all.' }] });
    const fromReader = await deliver(reviewed(pr, id, byReader, 'reader-rob', 'commented', ''), { event: 'pull_request_review' });
    assert.equal(fromReader.status, 202, JSON.stringify(fromReader.body));
    await eventually(async () => replies(), (n: number) => n === 1, 'a reply to the reader');
    assert.equal(await pending(), 'pending');

    // The writer's lone line comment is a review in state commented: one round, the comment batched as a review's are.
    const fromWriter = await deliver(reviewed(pr, id, lone, 'writer-wendy', 'commented', ''), { event: 'pull_request_review' });
    assert.equal(fromWriter.status, 202, JSON.stringify(fromWriter.body));
    const resent = await deliver(reviewed(pr, id, lone, 'writer-wendy', 'commented', ''), { event: 'pull_request_review' });
    assert.equal(resent.status, 200, 'the same review re-sent under a new delivery id is ignored');
    assert.match(resent.body.ignored, /taken already/);
    const second = await eventually(() => api.task(id), (t) => t.round === 2 && t.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'), 'round 2 up for review', 60_000);
    const first = second.items.find((i: any) => i.item_id === item.item_id);
    assert.equal(first.resolution.action, 'request_changes');
    assert.equal(first.resolution.actor, 'github:writer-wendy');
    assert.equal(first.resolution.comment, '- README.md:1: Say "commit" once.');
    assert.equal(github.state.pulls(REPO).filter((p) => p.head.ref === `agent/${id}`).length, 1, 'the round is on the same pull request');
    assert.equal(replies(), 1, 'the writer got no refusal');
    assert.deepEqual(github.violations(), []);
  });

  it('folds a writer’s later reviews while the agent works into one round after it, bounded: past the bound one reply, then refused unread', async () => {
    const { id, item, pr } = await taskWithPullRequest(5);
    const review = (state: 'CHANGES_REQUESTED' | 'COMMENTED', body: string, comments: { path: string; line: number; body: string }[] = []) =>
      github.state.addReview(REPO, pr, { reviewer: 'writer-wendy', state, body, comments });
    const send = (reviewId: number, state: string, body: string) => deliver(reviewed(pr, id, reviewId, 'writer-wendy', state, body), { event: 'pull_request_review' });
    const foldReplies = () => github.state.comments(REPO, pr).filter((c) => /went to it together/.test(c.body));
    const readerReplies = () => github.state.comments(REPO, pr).filter((c) => c.body.includes('@reader-rob'));

    // Round 2 is asked to take its time: the reviews below arrive while its step runs.
    const a = review('CHANGES_REQUESTED', `Rename it, ${SLOW_WORD}.`);
    assert.equal((await send(a, 'changes_requested', `Rename it, ${SLOW_WORD}.`)).status, 202);
    await eventually(() => api.task(id), (t) => t.round === 2 && !t.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'), 'round 2 under way');
    // The writer's first review during the round waits; lone line comments and another review fold into it.
    const b = review('COMMENTED', '', [{ path: 'README.md', line: 1, body: 'B: say it once.' }]);
    assert.equal((await send(b, 'commented', '')).status, 202);
    // Someone the task has never read as a writer: their first review waits unread, the next is refused; nothing folds.
    const byReader = (body: string) => github.state.addReview(REPO, pr, { reviewer: 'reader-rob', state: 'COMMENTED', body: '', comments: [{ path: 'README.md', line: 1, body }] });
    const readerSend = (reviewId: number) => deliver(reviewed(pr, id, reviewId, 'reader-rob', 'commented', ''), { event: 'pull_request_review' });
    assert.equal((await readerSend(byReader('R1: rewrite it all.'))).status, 202);
    const readerAgain = await readerSend(byReader('R2: and again.'));
    assert.equal(readerAgain.status, 200, JSON.stringify(readerAgain.body));
    assert.match(readerAgain.body.ignored, /a review by reader-rob already waits to be read/);
    const later: number[] = [];
    for (let i = 1; i <= MAX_FOLDED_REVIEWS; i++) {
      const r = i === MAX_FOLDED_REVIEWS ? review('CHANGES_REQUESTED', `F${i}: and a newline.`) : review('COMMENTED', '', [{ path: 'README.md', line: i + 1, body: `F${i}: look here.` }]);
      const res = await send(r, i === MAX_FOLDED_REVIEWS ? 'changes_requested' : 'commented', i === MAX_FOLDED_REVIEWS ? `F${i}: and a newline.` : '');
      assert.equal(res.status, 202, `later review ${i}: ${JSON.stringify(res.body)}`);
      later.push(r);
    }
    // Past the bound: taken once to tell the writer, then refused unread.
    const past = review('COMMENTED', '', [{ path: 'README.md', line: 40, body: 'PAST: not passed on.' }]);
    assert.equal((await send(past, 'commented', '')).status, 202);
    const refused = review('COMMENTED', '', [{ path: 'README.md', line: 41, body: 'REFUSED: not read.' }]);
    const refusedRes = await send(refused, 'commented', '');
    assert.equal(refusedRes.status, 200, JSON.stringify(refusedRes.body));
    assert.match(refusedRes.body.ignored, /already wait with their review/);
    const during = await api.task(id);
    assert.equal(foldReplies().length + readerReplies().length, 0, 'nobody is answered before their reviews are read');
    assert.ok(during.round === 2 && !during.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'), 'all of it arrived while round 2 ran');
    fs.writeFileSync(GATE, '');

    // Round 2 up for review: the waiting review and its folds settle it at once, as one round by the writer.
    const third = await eventually(() => api.task(id), (t) => t.round === 3 && t.items.some((i: any) => i.kind === 'pr_review' && i.status === 'pending'), 'round 3 up for review', 90_000);
    const second = third.items.filter((i: any) => i.kind === 'pr_review' && i.item_id !== item.item_id && i.status === 'resolved');
    assert.equal(second.length, 1, 'round 2 settled once');
    const comment: string = second[0].resolution.comment;
    assert.equal(second[0].resolution.actor, 'github:writer-wendy');
    const order = ['B: say it once.', ...Array.from({ length: MAX_FOLDED_REVIEWS }, (_, i) => `F${i + 1}:`)].map((w) => comment.indexOf(w));
    assert.ok(order.every((at) => at >= 0), comment);
    assert.deepEqual([...order].sort((x, y) => x - y), order, 'oldest first');
    assert.ok(!comment.includes('PAST') && !comment.includes('REFUSED'), comment);
    const decision = (await api.trace(id)).filter((e) => e.type === 'decision' && e.data?.item_id === second[0].item_id);
    assert.deepEqual(decision[0]?.data?.review_ids, [b, ...later]);
    assert.match(git(bare, 'show', `${third.commit}:FEEDBACK.md`), /B: say it once\.[\s\S]*F10: and a newline\./);
    await eventually(async () => foldReplies().length, (n: number) => n === 1, 'one reply to the writer saying the rest was not passed on');
    assert.ok(!comment.includes('R1:') && !comment.includes('R2:'), 'nothing of the reader’s in the writer’s round');
    // The reader's waiting review is read at the next wait: refused, with the one polite reply.
    await eventually(async () => readerReplies(), (cs: any[]) => cs.length === 1 && /write access/.test(cs[0].body), 'one reply to the reader');
    assert.equal(foldReplies().filter((c) => c.body.includes('@reader-rob')).length, 0);
    assert.equal((await api.task(id)).round, 3, 'the reader started no round');
    assert.equal(github.state.pulls(REPO).filter((p) => p.head.ref === `agent/${id}`).length, 1);
    assert.deepEqual(github.violations(), []);
    await recordHistory(env.stack.client, id, 'github-reviews-folded-pending-review');
  });

  it('is rejected, its branch deleted, when its pull request is closed unmerged; a fork’s branch of the same name is not it', async () => {
    const { id, pr } = await taskWithPullRequest(8);
    const spoof = await deliver(closed(pr, id, true, 'mallory', 'mallory/hello'), { event: 'pull_request' });
    assert.equal(spoof.status, 200);
    assert.match(spoof.body.ignored, /another repository/);
    const other = await deliver(closed(pr + 1000, id, true, 'mallory'), { event: 'pull_request' });
    assert.equal(other.status, 200);
    assert.match(other.body.ignored, /not octo-org\/hello#/);
    assert.ok(!ENDED_STATES.includes((await api.task(id)).state));

    const res = await deliver(closed(pr, id, false, 'writer-wendy'), { event: 'pull_request' });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const ended = await api.ended(id);
    assert.equal(ended.state, 'rejected');
    assert.match(ended.result, /closed without merging by github:writer-wendy/);
    assert.equal(branchCommit(bare, `agent/${id}`), null, 'the branch is deleted');
    // Ended other than done: no agent label, and the status comment says how it ended.
    await workflowEnded(id);
    assert.deepEqual(agentLabels(8), []);
    assert.match(statusComments(8, id)[0]?.body ?? '', /ended \(rejected\)/);
    assert.deepEqual(github.violations(), []);
  });

  it('waits, once approved in the inbox, for the merge on GitHub with nothing in the inbox: merged it ends done, closed unmerged rejected', async () => {
    const merged = await taskWithPullRequest(10);
    const closedOne = await taskWithPullRequest(11);
    for (const t of [merged, closedOne]) await api.decide(t.id, t.item, { action: 'approve' });
    for (const t of [merged, closedOne]) {
      const waiting = await eventually(() => api.task(t.id), (v) => v.state === 'awaiting_merge', `${t.id} waiting for the merge`);
      assert.equal(waiting.items.find((i: any) => i.item_id === t.item.item_id).resolution.action, 'approve', 'the review is settled on our side');
      assert.equal(waiting.items.filter((i: any) => i.status === 'pending').length, 0);
      assert.equal(waiting.merge.sha, waiting.commit, 'the approved commit is the one the task pushed');
      assert.equal(waiting.merge.method, null, 'merging is off: GitHub merges it');
      assert.equal(waiting.pull_request.closed, false);
    }
    const inbox = await call(base, 'GET', '/v1/inbox');
    assert.deepEqual(inbox.body.items.filter((i: any) => i.task_id === merged.id || i.task_id === closedOne.id), [], 'nothing of theirs in the inbox');
    // The issue still shows an open pull request, now approved.
    await eventually(async () => agentLabels(10), (ls: string[]) => ls.length === 1 && ls[0] === 'agent:pr-open', 'the issue still labelled agent:pr-open');
    await eventually(async () => statusComments(10, merged.id)[0]?.body ?? '', (b: string) => /approved and waiting to be merged/.test(b), 'the status comment saying it waits for the merge');
    // Approved: a review requesting changes on GitHub now starts no round.
    const late = github.state.addReview(REPO, merged.pr, { reviewer: 'writer-wendy', state: 'CHANGES_REQUESTED', body: 'One more thing.' });
    const lateRes = await deliver(reviewed(merged.pr, merged.id, late, 'writer-wendy'), { event: 'pull_request_review' });
    assert.equal(lateRes.status, 200, JSON.stringify(lateRes.body));
    assert.match(lateRes.body.ignored, /approved by .* and waits to be merged/);
    assert.equal(github.state.merges(REPO).length, 0, 'the worker merges nothing');

    assert.equal((await deliver(closed(merged.pr, merged.id, true, 'writer-wendy'), { event: 'pull_request' })).status, 202);
    const done = await api.ended(merged.id);
    assert.equal(done.state, 'done');
    assert.match(done.result, new RegExp(`pull request #${merged.pr} merged by github:writer-wendy after approval by .+; review to merge \\d+ s, approval to merge \\d+ s`));
    const entry = (await api.trace(merged.id)).find((e) => e.type === 'merged');
    assert.equal(typeof entry.data.review_to_merge_ms, 'number');
    assert.equal(typeof entry.data.approval_to_merge_ms, 'number');
    assert.ok(entry.data.review_to_merge_ms >= entry.data.approval_to_merge_ms, 'the review item opened before the approval');
    assert.equal(entry.actor, 'github:writer-wendy');

    assert.equal((await deliver(closed(closedOne.pr, closedOne.id, false, 'writer-wendy'), { event: 'pull_request' })).status, 202);
    const rejected = await api.ended(closedOne.id);
    assert.equal(rejected.state, 'rejected');
    assert.match(rejected.result, /closed without merging by github:writer-wendy after approval by/);
    assert.equal(branchCommit(bare, `agent/${closedOne.id}`), null, 'the branch is deleted');
    await workflowEnded(merged.id);
    assert.deepEqual(agentLabels(10), ['agent:done']);
    assert.deepEqual(github.violations(), []);
  });

  it('closes its pull request when rejected in the inbox, keeps away from a stranger’s pull request of its branch, and no token reaches a task', async () => {
    // The task id follows from the delivery's body, so a stranger can open a pull request from its branch first (into another base).
    // Whoever opened the issue wrote its title too: a squash merge makes the pull request's title the commit's.
    const title = 'Fixes #4242 for @octo-org/owners';
    const taskId = labelledIssueTaskId(crypto.createHash('sha256').update(JSON.stringify(labeled(9, title))).digest('hex'));
    const stranger = github.state.openPull(REPO, { title: 'mine now', head: `agent/${taskId}`, base: 'release', user: 'mallory' });
    const { id, item, pr } = await taskWithPullRequest(9, title);
    assert.equal(id, taskId);
    assert.notEqual(pr, stranger.number, 'the task opened its own pull request');
    // The issue's text reaches the body inert: it pings nobody, closes no other issue and opens no fold.
    const pull = github.state.pulls(REPO).find((p) => p.number === pr)!;
    const body = pull.body ?? '';
    assert.ok(!/Closes #4242|@octo-org\/owners|<\/details>\s*Injected/.test(body), body);
    assert.match(body, /Fixes #9/);
    // So do the title and the commit message, which land on the default branch when it is merged and close what they name there.
    assert.ok(!/#4242|@octo-org\/owners/.test(pull.title), pull.title);
    assert.equal(pull.title.replace(/\u200b/g, ''), title, 'the title reads the same');
    const message = git(bare, 'log', '-1', '--format=%B', (await api.task(id)).commit);
    assert.match(message, /accidently spelled/, 'the message carries the issue');
    assert.ok(!/#4242|@octo-org\/owners/.test(message), message);
    await api.decide(id, item, { action: 'reject', comment: 'not needed' });
    const ended = await api.ended(id);
    assert.equal(ended.state, 'rejected');
    await eventually(async () => github.state.pulls(REPO).find((p: any) => p.number === pr), (p: any) => p?.state === 'closed', 'the pull request closed');
    const everything = JSON.stringify([ended, await api.trace(id)]);
    assert.ok(!everything.includes(TOKEN), 'the token appears in no task or trace');
    assert.deepEqual(github.violations(), []);
  });
});

describe('the request for changes a writer’s reviews make', () => {
  it('passes on at most MAX_REQUEST_COMMENTS comments and MAX_REVIEW_REQUEST_CHARS characters, oldest first, saying what it left out', () => {
    const reviews = Array.from({ length: MAX_FOLDED_REVIEWS + 1 }, (_, r) => ({
      body: `review ${r}`,
      comments: Array.from({ length: 20 }, (_, c) => ({ path: 'a.js', line: c + 1, body: `r${r}c${c}` })),
    }));
    const few = reviewRequest(reviews.slice(0, 2));
    assert.equal(few.cut, false);
    assert.match(few.text, /^review 0\n- a\.js:1: r0c0\n[\s\S]*\n\nThen, in a later review:\nreview 1\n- a\.js:1: r1c0/);
    const many = reviewRequest(reviews);
    assert.equal(many.cut, true);
    assert.equal((many.text.match(/^- a\.js:\d+: r\d+c\d+$/gm) ?? []).length, MAX_REQUEST_COMMENTS);
    assert.match(many.text, new RegExp(`\\[${reviews.length * 20 - MAX_REQUEST_COMMENTS} more comment\\(s\\) not passed on`));
    assert.ok(many.text.includes('r0c0') && !many.text.includes(`r${MAX_FOLDED_REVIEWS}c19`), 'the oldest go first');
    const long = reviewRequest([{ body: 'x'.repeat(MAX_REVIEW_REQUEST_CHARS * 2), comments: [] }]);
    assert.equal(long.cut, true);
    assert.ok(long.text.length <= MAX_REVIEW_REQUEST_CHARS && long.text.endsWith('[the rest of the review is cut]'));
    assert.deepEqual(reviewRequest([{ body: ' ', comments: [] }]), { text: '(the review has no text)', cut: false });
  });
});
