/**
 * The GitHub mock: the project's real Octokit client against the stateful fake, every REST call checked by Prism
 * against GitHub's OpenAPI description. One Prism for the file.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { ACTOR_LOGIN, INSTALLATION_ID, startGithubMock, type GithubMock } from './support/github-mock';

const REPO = 'acme/widgets';
const [OWNER, NAME] = REPO.split('/');
const BRANCH = 'agent/fix-spelling';
const TOKEN = 'test-token';
const STATUS_BAD_GATEWAY = 502;
const STATUS_FORBIDDEN = 403;
/** Seconds until a planned rate limit would lift. */
const RATE_LIMIT_RESET_S = 60;
/** Key size GitHub requires of an App's private key. */
const APP_KEY_BITS = 2048;
const APP_ID = 4242;

let mock: GithubMock;
let octokit: Octokit;

before(async () => {
  mock = await startGithubMock();
  mock.state.addRepo(REPO, { default_branch: 'main' });
  mock.state.setPermission(REPO, 'maintainer', 'write');
  // Octokit's own default media type on purpose: Prism's proxy mode does not negotiate it.
  octokit = new Octokit({ baseUrl: mock.apiUrl, auth: TOKEN });
});

after(async () => {
  await mock?.stop();
});

/** Errors Prism reported while `body` ran. */
async function newViolations(body: () => Promise<unknown>): Promise<string[]> {
  const before = mock.violations().length;
  await body();
  return mock.violations().slice(before);
}

describe('GitHub mock', () => {
  it('serves a pull request from draft to merge with every call inside GitHub\'s description', async () => {
    const violations = await newViolations(async () => {
      const created = await octokit.pulls.create({ owner: OWNER, repo: NAME, title: 'Fix spelling', head: BRANCH, base: 'main', body: 'Fixes #1', draft: true });
      assert.equal(created.status, 201);
      assert.equal(created.data.draft, true);
      assert.equal(created.data.head.ref, BRANCH);

      const listed = await octokit.pulls.list({ owner: OWNER, repo: NAME, head: `${OWNER}:${BRANCH}`, state: 'open' });
      assert.deepEqual(listed.data.map((p) => p.number), [created.data.number]);
      const elsewhere = await octokit.pulls.list({ owner: OWNER, repo: NAME, head: `${OWNER}:other`, state: 'open' });
      assert.deepEqual(elsewhere.data, []);

      const ready = await octokit.graphql<{ markPullRequestReadyForReview: { pullRequest: { isDraft: boolean; number: number } } }>(
        'mutation($pullRequestId: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $pullRequestId}) { pullRequest { id isDraft number } } }',
        { pullRequestId: created.data.node_id },
      );
      assert.deepEqual(ready.markPullRequestReadyForReview.pullRequest.isDraft, false);
      assert.equal((await octokit.pulls.get({ owner: OWNER, repo: NAME, pull_number: created.data.number })).data.draft, false);

      const check = await octokit.checks.create({ owner: OWNER, repo: NAME, name: 'agent-inbox', head_sha: created.data.head.sha, status: 'in_progress' });
      await octokit.checks.update({ owner: OWNER, repo: NAME, check_run_id: check.data.id, conclusion: 'success', output: { title: 'Done', summary: 'All steps passed' } });
      const runs = await octokit.checks.listForRef({ owner: OWNER, repo: NAME, ref: created.data.head.sha, check_name: 'agent-inbox' });
      assert.deepEqual(runs.data.check_runs.map((r) => [r.status, r.conclusion]), [['completed', 'success']]);

      const writer = await octokit.repos.getCollaboratorPermissionLevel({ owner: OWNER, repo: NAME, username: 'maintainer' });
      assert.equal(writer.data.permission, 'write');
      const stranger = await octokit.repos.getCollaboratorPermissionLevel({ owner: OWNER, repo: NAME, username: 'passer-by' });
      assert.equal(stranger.data.permission, 'none');

      const reviewId = mock.state.addReview(REPO, created.data.number, {
        reviewer: 'maintainer', state: 'CHANGES_REQUESTED', body: 'Almost', comments: [{ path: 'README.md', line: 3, body: 'Typo here' }],
      });
      const review = await octokit.pulls.getReview({ owner: OWNER, repo: NAME, pull_number: created.data.number, review_id: reviewId });
      assert.equal(review.data.state, 'CHANGES_REQUESTED');
      const comments = await octokit.pulls.listCommentsForReview({ owner: OWNER, repo: NAME, pull_number: created.data.number, review_id: reviewId });
      assert.deepEqual(comments.data.map((c) => [c.path, c.body, c.user?.login]), [['README.md', 'Typo here', 'maintainer']]);

      const note = await octokit.issues.createComment({ owner: OWNER, repo: NAME, issue_number: created.data.number, body: 'Working on it' });
      await octokit.issues.updateComment({ owner: OWNER, repo: NAME, comment_id: note.data.id, body: 'Fixed' });
      await octokit.issues.addLabels({ owner: OWNER, repo: NAME, issue_number: created.data.number, labels: ['agent', 'needs-review'] });
      await octokit.issues.removeLabel({ owner: OWNER, repo: NAME, issue_number: created.data.number, name: 'needs-review' });

      const merged = await octokit.pulls.merge({ owner: OWNER, repo: NAME, pull_number: created.data.number });
      assert.equal(merged.data.merged, true);
      await octokit.git.deleteRef({ owner: OWNER, repo: NAME, ref: `heads/${BRANCH}` });
      await octokit.repos.get({ owner: OWNER, repo: NAME });

      const [pull] = mock.state.pulls(REPO);
      assert.deepEqual([pull.state, pull.merged, pull.draft], ['closed', true, false]);
      assert.deepEqual(mock.state.comments(REPO, pull.number).map((c) => [c.body, c.user]), [['Fixed', ACTOR_LOGIN]]);
      assert.deepEqual(mock.state.labels(REPO, pull.number), ['agent']);
      assert.deepEqual(mock.state.deletedRefs(REPO), [`heads/${BRANCH}`]);
      assert.equal(mock.state.requests.filter((r) => r.method === 'POST' && r.path === `/repos/${REPO}/pulls`).length, 1);
      assert.ok(mock.state.requests.every((r) => r.authorization === `token ${TOKEN}`));
    });
    assert.deepEqual(violations, []);
  });

  it('authenticates as a GitHub App installation with a token that expires in an hour', async () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: APP_KEY_BITS });
    const violations = await newViolations(async () => {
      const app = new Octokit({ baseUrl: mock.apiUrl, authStrategy: createAppAuth, auth: { appId: APP_ID, privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() } });
      const installation = await app.apps.getRepoInstallation({ owner: OWNER, repo: NAME });
      assert.equal(installation.data.id, INSTALLATION_ID);
      const installed = new Octokit({ baseUrl: mock.apiUrl, authStrategy: createAppAuth, auth: { appId: APP_ID, privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), installationId: INSTALLATION_ID } });
      await installed.repos.get({ owner: OWNER, repo: NAME });
    });
    assert.deepEqual(violations, []);
    const [jwtCall, tokenCall, repoCall] = mock.state.requests.slice(-3);
    assert.match(String(jwtCall.authorization), /^bearer /i);
    assert.equal(tokenCall.path, `/app/installations/${INSTALLATION_ID}/access_tokens`);
    assert.match(String(repoCall.authorization), /^token ghs_/);
  });

  it('refuses a request body GitHub\'s description refuses before the fake sees it', async () => {
    const served = mock.state.requests.length;
    let status: number | undefined;
    const violations = await newViolations(async () => {
      await octokit.request('POST /repos/{owner}/{repo}/pulls', { owner: OWNER, repo: NAME, title: 'No head', base: 'main' } as never)
        .catch((error: { status?: number }) => { status = error.status; });
    });
    assert.ok(status !== undefined && status >= 400 && status < 500, `expected a 4xx, got ${status}`);
    assert.ok(violations.some((v) => v.includes('POST /repos/acme/widgets/pulls') && /head/.test(v)), violations.join('\n'));
    assert.equal(mock.state.requests.length, served);
  });

  it('replaces a response that breaks the description with an error and records it', async () => {
    const sha = mock.state.branchSha(REPO, 'main');
    mock.state.addCheckRun(REPO, { name: 'broken', headSha: sha, status: 'exploded', conclusion: null, detailsUrl: null, externalId: null, output: { title: null, summary: null, text: null } });
    let status: number | undefined;
    const violations = await newViolations(async () => {
      await octokit.checks.listForRef({ owner: OWNER, repo: NAME, ref: sha }).catch((error: { status?: number }) => { status = error.status; });
    });
    assert.ok(status !== undefined && status >= 500, `expected Prism's 500, got ${status}`);
    assert.ok(violations.some((v) => v.includes('response') && v.includes('status')), violations.join('\n'));
  });

  it('fails the next calls of an operation as planned, then serves again', async () => {
    mock.state.failNext('GET', '/repos/{owner}/{repo}', STATUS_BAD_GATEWAY, 2);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(octokit.repos.get({ owner: OWNER, repo: NAME }), (error: { status?: number }) => error.status === STATUS_BAD_GATEWAY);
    }
    assert.equal((await octokit.repos.get({ owner: OWNER, repo: NAME })).data.full_name, REPO);

    const issue = mock.state.addIssue(REPO);
    const reset = String(Math.floor(Date.now() / 1000) + RATE_LIMIT_RESET_S);
    mock.state.failNext('POST', '/repos/{owner}/{repo}/issues/{issue_number}/comments', STATUS_FORBIDDEN, 1, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset });
    await assert.rejects(
      octokit.issues.createComment({ owner: OWNER, repo: NAME, issue_number: issue, body: 'hello' }),
      (error: { status?: number; response?: { headers: Record<string, string> } }) =>
        error.status === STATUS_FORBIDDEN && error.response?.headers['x-ratelimit-remaining'] === '0' && error.response.headers['x-ratelimit-reset'] === reset,
    );
    await octokit.issues.createComment({ owner: OWNER, repo: NAME, issue_number: issue, body: 'hello' });
    assert.deepEqual(mock.state.comments(REPO, issue).map((c) => c.body), ['hello']);
  });
});
