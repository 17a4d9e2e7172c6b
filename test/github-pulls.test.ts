/**
 * The worker's pull requests on GitHub: the real Octokit client (throttling and retry plugins, token and App
 * auth) against the GitHub mock, whose Prism proxy checks every request and response against GitHub's OpenAPI
 * description. One mock for the suite; each test uses its own head branch.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { refusedAsEnded, updateAcrossRuns } from '../api/github/across-runs';
import type { PublishPullRequest } from '../domain/forge';
import { createPullRequestActivities } from '../activities/github/activities';
import type { PullRequestActivities } from '../activities/types';
import { githubClients, MAX_TRANSIENT_RETRIES, type GithubAccess } from '../activities/github/client';
import { githubPullRequests, MAX_BODY_CHARS, SELF_CHECK_NAME } from '../activities/github/pulls';
import { ConfigError } from '../workers/config';
import { loadGithubAccess } from '../workers/config-github';
import type { Logger } from '../workers/log';
import { tempDir } from './support/git-fixture';
import { ACTOR_LOGIN, startGithubMock, type GithubMock } from './support/github-mock';

const REPO = 'octo-org/hello';
const PUBLIC_URL = 'https://inbox.example';
/** One unit of the plugins' backoff in tests: their 1-4-9 unit waits become milliseconds. */
const RETRY_UNIT_MS = 5;
const TOKEN = `ghp_${crypto.randomBytes(18).toString('hex')}`;

let mock: GithubMock;
let pulls: PullRequestActivities;
const logLines: string[] = [];
const errorMessages: string[] = [];

/** A logger keeping every line it is given, to look for secrets in. */
const log: Logger = Object.fromEntries(
  (['debug', 'info', 'warn', 'error'] as const).map((level) => [level, (msg: string, attrs?: Record<string, unknown>) => logLines.push(JSON.stringify({ level, msg, ...attrs }))]),
) as unknown as Logger;

/** The activities over `access`, reaching the mock without write pacing and with short backoff. */
function activitiesFor(access: GithubAccess): PullRequestActivities {
  const clients = githubClients(access, { log, paceWrites: false, retryUnitMs: RETRY_UNIT_MS });
  return createPullRequestActivities(githubPullRequests((repo) => clients.octokitFor(repo), { selfLogin: () => clients.selfLogin(), publicUrl: PUBLIC_URL, selfCheckAs: 'check_run', log }));
}

/** A round of task `task` on `agent/<task>` at `commit`. */
function round(task: string, conclusion: 'success' | 'failure', extra: Partial<PublishPullRequest> = {}): PublishPullRequest {
  return {
    task_id: task,
    repo: REPO,
    head: `agent/${task}`,
    base: 'main',
    commit: crypto.createHash('sha1').update(task).digest('hex'),
    title: `Fix the spelling (${task})`,
    body: '## Goal\nFix the spelling.\n\n## Changes\nREADME.md',
    fixes: 7,
    self_check: { conclusion, summary: `npm test ${conclusion === 'success' ? 'passed' : 'failed'}`, text: '```\n1 test\n```' },
    ...extra,
  };
}

/** The failure `promise` rejects with, its message kept to look for secrets in. */
async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ApplicationFailure, `not an ApplicationFailure: ${String(err)}`);
  errorMessages.push(err.message, String((err.cause as Error | undefined)?.message ?? ''));
  return err;
}

describe('GitHub pull requests', () => {
  before(async () => {
    mock = await startGithubMock();
    mock.state.addRepo(REPO);
    pulls = activitiesFor({ apiUrl: mock.apiUrl, auth: { kind: 'token', token: TOKEN } });
  });

  after(async () => {
    await mock?.stop();
  });

  it('publishes a round twice as one draft pull request with one check run, and marks it ready once the self-check passes', async () => {
    const failing = round('t-repeat', 'failure');
    const first = await pulls.publishPullRequest(failing);
    assert.equal(first.created, true);
    assert.equal(first.draft, true);
    const again = await pulls.publishPullRequest({ ...failing, title: 'Fix the spelling, second try' });
    assert.deepEqual({ ...again, created: false }, { ...first, created: false });
    assert.equal(again.created, false);
    assert.equal(again.draft, true, 'a failing self-check leaves the pull request a draft');

    const opened = mock.state.pulls(REPO).filter((p) => p.head.ref === failing.head);
    assert.equal(opened.length, 1);
    assert.equal(opened[0]!.title, 'Fix the spelling, second try');
    assert.match(opened[0]!.body ?? '', /Fixes #7/);
    assert.ok((opened[0]!.body ?? '').includes(`${PUBLIC_URL}/tasks/t-repeat`), 'the body links to the task in the inbox');
    assert.match(first.url, new RegExp(`/${REPO}/pull/${first.number}$`));

    const passing = await pulls.publishPullRequest(round('t-repeat', 'success'));
    assert.equal(passing.number, first.number);
    assert.equal(passing.draft, false);
    assert.equal(mock.state.pull(REPO, first.number)!.draft, false);
    const runs = mock.state.checkRuns(REPO).filter((r) => r.headSha === failing.commit);
    assert.equal(runs.length, 1, 'one check run per commit, updated in place');
    assert.equal(runs[0]!.name, SELF_CHECK_NAME);
    assert.equal(runs[0]!.conclusion, 'success');
    assert.equal(runs[0]!.detailsUrl, `${PUBLIC_URL}/tasks/t-repeat`);
  });

  it('cuts a body past GitHub\'s limit and keeps the inbox link and the issue it fixes', async () => {
    const published = await pulls.publishPullRequest(round('t-long', 'failure', { body: 'x'.repeat(MAX_BODY_CHARS + 10) }));
    const body = mock.state.pull(REPO, published.number)!.body ?? '';
    assert.ok(body.length <= MAX_BODY_CHARS, `body of ${body.length} characters`);
    assert.match(body, /\[the rest is cut/);
    assert.match(body, /Fixes #7$/);
  });

  it('retries a 502 on opening without opening a second pull request', async () => {
    mock.state.failNext('POST', `/repos/${REPO}/pulls`, 502);
    const published = await pulls.publishPullRequest(round('t-502', 'failure'));
    assert.equal(published.created, true);
    assert.equal(mock.state.pulls(REPO).filter((p) => p.head.ref === 'agent/t-502').length, 1);
    assert.equal(mock.state.requests.filter((r) => r.method === 'POST' && r.path === `/repos/${REPO}/pulls` && (r.body as { head?: string }).head === 'agent/t-502').length, 2);
  });

  it('closes a pull request once and says why once, however often it is asked', async () => {
    const { number } = await pulls.publishPullRequest(round('t-close', 'failure'));
    await pulls.closePullRequest({ repo: REPO, number, comment: 'The task was cancelled.' });
    await pulls.closePullRequest({ repo: REPO, number, comment: 'The task was cancelled.' });
    assert.equal(mock.state.pull(REPO, number)!.state, 'closed');
    assert.deepEqual(mock.state.comments(REPO, number).map((c) => c.body), ['The task was cancelled.']);
    assert.equal(mock.state.requests.filter((r) => r.method === 'PATCH' && r.path === `/repos/${REPO}/pulls/${number}`).length, 1);
  });

  it('reads a writer\'s review with its comments, and refuses a reader\'s without reading it', async () => {
    const { number } = await pulls.publishPullRequest(round('t-review', 'failure'));
    mock.state.setPermission(REPO, 'alice', 'write');
    mock.state.setPermission(REPO, 'bob', 'read');
    const byWriter = mock.state.addReview(REPO, number, {
      reviewer: 'alice',
      state: 'CHANGES_REQUESTED',
      body: 'Please also fix the CONTRIBUTING file.',
      comments: [
        { path: 'README.md', line: 3, body: 'commit, not committ' },
        { path: 'docs/intro.md', line: 10, body: 'same here' },
      ],
    });
    const byReader = mock.state.addReview(REPO, number, { reviewer: 'bob', state: 'CHANGES_REQUESTED', body: 'Delete everything.', comments: [{ path: 'a', line: 1, body: 'rm -rf' }] });

    const writer = await pulls.readReviewFeedback({ repo: REPO, number, review_id: byWriter, reviewer: 'alice' });
    assert.deepEqual(writer, {
      permission: 'write',
      allowed: true,
      state: 'changes_requested',
      body: 'Please also fix the CONTRIBUTING file.',
      comments: [
        { path: 'README.md', line: 3, body: 'commit, not committ' },
        { path: 'docs/intro.md', line: 10, body: 'same here' },
      ],
      has_comments: true,
    });
    // The event naming a writer does not lend the reader's review the writer's permission.
    const reader = await pulls.readReviewFeedback({ repo: REPO, number, review_id: byReader, reviewer: 'alice' });
    assert.deepEqual(reader, { permission: 'read', allowed: false, state: 'changes_requested', body: '', comments: [] });
    assert.equal(mock.state.requests.some((r) => r.path.endsWith(`/reviews/${byReader}/comments`)), false);

    await pulls.commentOnPullRequest({ repo: REPO, number, body: 'Only people with write access can steer the agent.' });
    assert.deepEqual(mock.state.comments(REPO, number).map((c) => c.body), ['Only people with write access can steer the agent.']);
  });

  it('takes no pull request someone else opened from its branch, and keeps to the task\'s own once it has one', async () => {
    // Into the same base: GitHub refuses a second one, and the stranger's is not adopted.
    const theirs = mock.state.openPull(REPO, { title: 'mine now', head: 'agent/t-stranger', base: 'main', user: 'mallory' });
    const refused = await failureOf(pulls.publishPullRequest(round('t-stranger', 'success')));
    assert.equal(refused.type, 'ForgeRefused');
    assert.match(refused.message, /not opened by this worker/);
    assert.equal(mock.state.pull(REPO, theirs.number)!.body, null, 'nothing written to theirs');
    // Into another base: the task opens its own; a later round names it and updates exactly that one.
    mock.state.openPull(REPO, { title: 'mine now', head: 'agent/t-pinned', base: 'release', user: 'mallory' });
    const first = await pulls.publishPullRequest(round('t-pinned', 'success'));
    assert.equal(mock.state.pull(REPO, first.number)!.user, ACTOR_LOGIN);
    const again = await pulls.publishPullRequest(round('t-pinned', 'success', { number: first.number }));
    assert.equal(again.number, first.number);
    assert.equal(again.created, false);
  });

  it('waits out a primary rate limit and logs it without the token', async () => {
    const { number } = await pulls.publishPullRequest(round('t-limit', 'failure'));
    const reset = String(Math.floor(Date.now() / 1000));
    mock.state.failNext('POST', `/repos/${REPO}/issues/${number}/comments`, 403, 1, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': reset });
    await pulls.commentOnPullRequest({ repo: REPO, number, body: 'after the limit' });
    assert.deepEqual(mock.state.comments(REPO, number).map((c) => c.body), ['after the limit']);
    assert.ok(logLines.some((l) => l.includes('github rate limit reached') && l.includes('"retrying":true')), logLines.join('\n'));
  });

  it('fails retryably on a 5xx that outlasts the retries, and not retryably on 404 and 422', async () => {
    const { number } = await pulls.publishPullRequest(round('t-fail', 'failure'));
    const path5xx = `/repos/${REPO}/issues/${number}/comments`;
    mock.state.failNext('POST', path5xx, 503, MAX_TRANSIENT_RETRIES + 1);
    const unavailable = await failureOf(pulls.commentOnPullRequest({ repo: REPO, number, body: 'never posted' }));
    assert.equal(unavailable.type, 'ForgeFailed');
    assert.equal(unavailable.nonRetryable, false);
    assert.match(unavailable.message, new RegExp(`comment on pull request of ${REPO} failed \\(HTTP 503\\)`));
    assert.equal(mock.state.requests.filter((r) => r.method === 'POST' && r.path === path5xx).length, MAX_TRANSIENT_RETRIES + 1);

    const missing = await failureOf(pulls.closePullRequest({ repo: 'octo-org/absent', number: 1, comment: 'x' }));
    assert.equal(missing.type, 'ForgeRefused');
    assert.equal(missing.nonRetryable, true);
    assert.match(missing.message, /octo-org\/absent failed \(HTTP 404\)/);

    mock.state.failNext('PATCH', `/repos/${REPO}/pulls/${number}`, 422);
    const invalid = await failureOf(pulls.closePullRequest({ repo: REPO, number, comment: 'x' }));
    assert.equal(invalid.type, 'ForgeRefused');
    assert.match(invalid.message, /HTTP 422/);

    const badName = await failureOf(pulls.commentOnPullRequest({ repo: '../etc', number: 1, body: 'x' }));
    assert.equal(badName.type, 'InvalidInput');
  });

  it('acts as the App\'s installation: looks it up once per repository and uses the installation token', async () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const asApp = activitiesFor({ apiUrl: mock.apiUrl, auth: { kind: 'app', appId: 4242, privateKey } });
    const from = mock.state.requests.length;
    const first = await asApp.publishPullRequest(round('t-app', 'success'));
    await asApp.publishPullRequest(round('t-app', 'success'));
    assert.equal(first.draft, false);
    const seen = mock.state.requests.slice(from);
    const lookups = seen.filter((r) => r.path === `/repos/${REPO}/installation`);
    assert.equal(lookups.length, 1, 'the installation of a repository is looked up once');
    assert.match(lookups[0]!.authorization ?? '', /^bearer \S+\.\S+\.\S+$/i, 'the installation is looked up with the App\'s JWT');
    const tokenRequests = seen.filter((r) => r.method === 'POST' && r.path === '/app/installations/1/access_tokens');
    assert.equal(tokenRequests.length, 1, 'the installation token is kept');
    assert.match(tokenRequests[0]!.authorization ?? '', /^bearer \S+\.\S+\.\S+$/i, 'the token is asked for with the App\'s JWT');
    const repoCalls = seen.filter((r) => r.path.startsWith(`/repos/${REPO}/`) && !r.path.endsWith('/installation'));
    assert.ok(repoCalls.length > 0);
    for (const r of repoCalls) assert.match(r.authorization ?? '', /^token ghs_/, `${r.method} ${r.path} uses the installation token`);
    assert.equal(mock.state.pulls(REPO).filter((p) => p.head.ref === 'agent/t-app').length, 1);
  });

  it('refuses every activity, not retryably, when no GitHub access is configured', async () => {
    const none = createPullRequestActivities(null);
    const refused = await failureOf(none.publishPullRequest(round('t-none', 'success')));
    assert.equal(refused.type, 'ForgeRefused');
    assert.equal(refused.nonRetryable, true);
    assert.match(refused.message, /GITHUB_TOKEN_FILE or GITHUB_APP_ID/);
  });

  it('reads GitHub access from the environment and refuses bad combinations naming the variable', () => {
    const dir = tempDir('gh-config-');
    const dataDir = path.join(dir, 'data');
    const secret = (name: string, text: string, mode = 0o600): string => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, text, { mode });
      fs.chmodSync(file, mode);
      return file;
    };
    const tokenFile = secret('token', `${TOKEN}\n`);
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const keyFile = secret('app.pem', privateKey);
    const refusal = (env: NodeJS.ProcessEnv, variable: string) =>
      assert.throws(() => loadGithubAccess(env, dataDir), (e: unknown) => e instanceof ConfigError && e.message.includes(`${variable}:`) && !e.message.includes(TOKEN) && !e.message.includes('PRIVATE KEY'));

    assert.equal(loadGithubAccess({}, dataDir), null);
    assert.deepEqual(loadGithubAccess({ GITHUB_TOKEN_FILE: tokenFile, GITHUB_API_URL: 'https://ghe.example/api/v3/' }, dataDir), {
      apiUrl: 'https://ghe.example/api/v3',
      auth: { kind: 'token', token: TOKEN },
    });
    assert.deepEqual(loadGithubAccess({ GITHUB_APP_ID: '4242', GITHUB_APP_PRIVATE_KEY_FILE: keyFile }, dataDir)?.auth, { kind: 'app', appId: 4242, privateKey: privateKey.replace(/\n$/, '') });
    refusal({ GITHUB_TOKEN_FILE: tokenFile, GITHUB_APP_ID: '4242', GITHUB_APP_PRIVATE_KEY_FILE: keyFile }, 'GITHUB_TOKEN_FILE');
    refusal({ GITHUB_APP_ID: '4242' }, 'GITHUB_APP_PRIVATE_KEY_FILE');
    refusal({ GITHUB_APP_PRIVATE_KEY_FILE: keyFile }, 'GITHUB_APP_ID');
    refusal({ GITHUB_APP_ID: 'my-app', GITHUB_APP_PRIVATE_KEY_FILE: keyFile }, 'GITHUB_APP_ID');
    refusal({ GITHUB_APP_ID: '4242', GITHUB_APP_PRIVATE_KEY_FILE: tokenFile }, 'GITHUB_APP_PRIVATE_KEY_FILE');
    refusal({ GITHUB_TOKEN_FILE: secret('open-token', TOKEN, 0o644) }, 'GITHUB_TOKEN_FILE');
    refusal({ GITHUB_TOKEN_FILE: tokenFile, GITHUB_API_URL: 'http://ghe.example/api/v3' }, 'GITHUB_API_URL');
    fs.mkdirSync(dataDir, { recursive: true });
    fs.copyFileSync(tokenFile, path.join(dataDir, 'token'));
    refusal({ GITHUB_TOKEN_FILE: path.join(dataDir, 'token') }, 'GITHUB_TOKEN_FILE');
  });

  it('broke no rule of GitHub\'s API description and let no token into an error or a log line', () => {
    assert.deepEqual(mock.violations(), []);
    assert.ok(errorMessages.length > 0 && logLines.length > 0);
    for (const text of [...errorMessages, ...logLines]) {
      assert.equal(text.includes(TOKEN), false, text);
      assert.equal(/ghs_[0-9a-f]{8,}/.test(text), false, text);
    }
  });
});

describe('a forge event sent while its task hands over to a new run', () => {
  const ended = () => new WorkflowUpdateFailedError('refused', ApplicationFailure.create({ type: 'TaskEnded', message: 'task t has ended or is ending (pr_open)', nonRetryable: true }));
  const timing = { waitMs: 300, pollMs: 5 };
  /** A task whose describe answers `runs` in turn (the last one from then on). */
  const task = (runs: { runId: string; status: string }[]) => {
    let n = 0;
    return { describe: async () => ({ ...runs[Math.min(n++, runs.length - 1)]!, status: { name: runs[Math.min(n - 1, runs.length - 1)]!.status } }) } as any;
  };

  it('goes to the run that takes over when the first refuses it as ended', async () => {
    const sent: number[] = [];
    const handle = task([{ runId: 'r1', status: 'RUNNING' }, { runId: 'r1', status: 'RUNNING' }, { runId: 'r2', status: 'RUNNING' }]);
    const got = await updateAcrossRuns(handle, 'r1', async () => {
      sent.push(sent.length);
      if (sent.length === 1) throw ended();
      return 'taken';
    }, timing);
    assert.equal(got, 'taken');
    assert.equal(sent.length, 2);
  });

  it('gives the refusal back when the task really ended, or no run took over in time; other failures pass through at once', async () => {
    await assert.rejects(updateAcrossRuns(task([{ runId: 'r1', status: 'COMPLETED' }]), 'r1', async () => { throw ended(); }, timing), (err: unknown) => refusedAsEnded(err));
    const t0 = Date.now();
    await assert.rejects(updateAcrossRuns(task([{ runId: 'r1', status: 'RUNNING' }]), 'r1', async () => { throw ended(); }, timing), (err: unknown) => refusedAsEnded(err));
    assert.ok(Date.now() - t0 >= timing.waitMs - timing.pollMs, 'it waited for a run to take over');
    let described = 0;
    const other = new WorkflowUpdateFailedError('refused', ApplicationFailure.create({ type: 'ReviewRefused', message: 'no', nonRetryable: true }));
    await assert.rejects(updateAcrossRuns({ describe: async () => { described++; return {} as any; } }, 'r1', async () => { throw other; }, timing), (err: unknown) => err === other);
    assert.equal(described, 0);
    // A task that keeps handing over is followed a bounded number of times.
    let sends = 0;
    let run = 0;
    await assert.rejects(updateAcrossRuns({ describe: async () => ({ runId: `r${++run}`, status: { name: 'RUNNING' } }) as any }, 'r0', async () => { sends++; throw ended(); }, timing), (err: unknown) => refusedAsEnded(err));
    assert.equal(sends, 3);
  });
});
