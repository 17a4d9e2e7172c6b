/**
 * Git to GitHub as the App: the worker clones and pushes the agent's branch to GITHUB_GIT_BASE (here a smart-HTTP
 * server that, like GitHub's, takes user `x-access-token` with an installation token the mock issued) with the
 * installation token of the repository, fetched with the App's key, kept until shortly before it expires and
 * handed to git only through the worker's own credential helper, so no trace, artifact, file under DATA_DIR or
 * sandbox environment holds it. A wrong key fails the push with a message that says so; a personal access token
 * goes to git the same way.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { githubClients, INSTALLATION_TOKEN_RENEW_MS, type GithubAccess } from '../activities/github/client';
import { githubGitCredentials } from '../activities/github/git-credentials';
import { clone, GitCredentialsError, headCommit, push } from '../activities/git/workspace';
import type { Logger } from '../workers/log';
import { branchCommit, filesHolding, tempDir } from './support/git-fixture';
import { startGitHttpServer } from './support/git-http-server';
import { deliver, labelledIssue } from './support/github-deliveries';
import { APP_BOT_LOGIN, type GithubMock } from './support/github-mock';
import { startGithubStack, type GithubStack } from './support/github-stack';
import { call } from './support/http';
import { taskApi } from './support/task-api';

const REPO = 'octo-org/hello';
const APP_ID = 4242;
const PAT = `ghp_${crypto.randomBytes(18).toString('hex')}`;
/** The step prints everything the sandbox can read about its repository and environment into its log (an artifact). */
const LOOK = 'cat /workspace.git/config "$GIT_DIR/config" 2>&1; git config --list 2>&1; env; printf "Please commit often.\\n" > README.md';
const PLANNER = { kind: 'recipe', steps: [{ run: LOOK, name: 'look around' }] };

const rsa = () => crypto.generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
const appKey = rsa();
const wrongKey = rsa();
/** A line from the middle of the App's key: enough to find the key anywhere it should not be. */
const KEY_LINE = appKey.privateKey.split('\n')[5]!;

let env: GithubStack;
let github: GithubMock;
let base: string;
const opened: string[] = [];
const api = taskApi(() => base);
const logLines: string[] = [];
const log: Logger = Object.fromEntries(
  (['debug', 'info', 'warn', 'error'] as const).map((level) => [level, (msg: string, attrs?: Record<string, unknown>) => logLines.push(JSON.stringify({ level, msg, ...attrs }))]),
) as unknown as Logger;

/** A labelled issue `number` of {@link REPO}, labelled by octocat. */
function labeled(number: number): any {
  return labelledIssue(REPO, number);
}

/** Clients of the mock as `access` without write pacing. */
function clientsFor(access: GithubAccess['auth']) {
  return githubClients({ apiUrl: github.apiUrl, auth: access }, { log, paceWrites: false, retryUnitMs: 5 });
}


/** The rules that let a push reach the local servers. */
const rules = (origin: string) => ({ allow: [`${origin}/**`], localRoots: [], forbidden: [] });

before(async () => {
  env = await startGithubStack('github-app-git', {
    repo: REPO,
    readme: 'Please commmit often.\n',
    planner: PLANNER,
    app: { appId: APP_ID, publicKey: appKey.publicKey, privateKey: appKey.privateKey },
    gitOverHttp: true,
  });
  ({ github, base } = env);
  while (!github.state.hasIssue(REPO, 3)) github.state.addIssue(REPO);
});

after(async () => {
  if (base) await api.cancelOpen(opened);
  await env?.stop();
});

describe('git to GitHub as the App', () => {
  it('clones and pushes with the installation token while no trace, artifact, file or sandbox sees it', async () => {
    const res = await deliver(base, labeled(3));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.task_id as string;
    opened.push(id);
    const item = await api.nextItem(id, ['pr_review']);
    assert.ok(item.detail.pull_request, `a pull request: ${JSON.stringify((await api.trace(id)).filter((e) => e.type === 'health'))}`);
    assert.ok(branchCommit(env.bare, `agent/${id}`), 'the push landed');
    assert.ok(env.gitServer!.counts.unauthorized > 0, 'git was asked for credentials');
    assert.ok(env.gitServer!.counts.served > 0, 'and presented an installation token');
    assert.equal(github.state.pulls(REPO).find((p) => p.number === item.detail.pull_request.number)?.user, APP_BOT_LOGIN);
    const tokens = github.state.issuedTokens.map((t) => t.token);
    assert.ok(tokens.length > 0);

    const log = await call(base, 'GET', `/v1/tasks/${id}/artifacts/step-1-0.log`);
    assert.equal(log.status, 200);
    assert.match(String(log.body), /octo-org\/hello\.git/, 'the step did read the repository config');
    assert.match(String(log.body), /PATH=/, 'and the sandbox environment');
    const seen = JSON.stringify([await api.task(id), await api.trace(id), String(log.body)]);
    const dataDir = path.join(path.dirname(env.bare), '..', '..', 'data');
    for (const secret of [...tokens, KEY_LINE]) {
      assert.ok(!seen.includes(secret), 'not in the task, its trace or the step log (the sandbox env and git config)');
      assert.deepEqual(filesHolding(dataDir, secret), [], 'no file under DATA_DIR (working copies, sandboxes, artifacts)');
    }
    assert.deepEqual(github.violations(), []);
  });

  it('keeps an installation token until shortly before it expires, then asks for a new one', async () => {
    const credentials = githubGitCredentials(env.gitServer!.origin, clientsFor({ kind: 'app', appId: APP_ID, privateKey: appKey.privateKey }));
    const url = `${env.gitServer!.origin}/${REPO}.git`;
    const asked = () => github.state.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/access_tokens')).length;
    const before = asked();
    const first = await credentials(url);
    assert.equal(first?.username, 'x-access-token');
    assert.ok(github.state.acceptsInstallationToken(first!.password));
    assert.deepEqual(await credentials(url), first, 'kept');
    assert.equal(asked(), before + 1);

    github.state.installationTokenTtlMs = INSTALLATION_TOKEN_RENEW_MS / 2;
    try {
      const other = githubGitCredentials(env.gitServer!.origin, clientsFor({ kind: 'app', appId: APP_ID, privateKey: appKey.privateKey }));
      const soon = await other(url);
      const renewed = await other(url);
      assert.notEqual(renewed!.password, soon!.password, 'a token about to expire is not handed to git');
      // Each call found the token it had about to expire (the first one too, as GitHub issued it) and renewed it.
      assert.equal(asked(), before + 1 + 2 + 1);
    } finally {
      github.state.installationTokenTtlMs = 60 * 60_000;
    }
    assert.equal(await credentials('https://gitlab.example/octo-org/hello.git'), null, 'nothing for another host');
    assert.equal(await credentials(`${env.gitServer!.origin}/octo-org/hello/info.git`), null, 'nothing for a path that is no repository');
  });

  it('fails the push clearly with a wrong App key, leaking neither key nor token', async () => {
    // Refused before git runs: no working copy is read.
    const dir = tempDir('wrong-key');
    const commit = 'a'.repeat(40);
    const credentials = githubGitCredentials(env.gitServer!.origin, clientsFor({ kind: 'app', appId: APP_ID, privateKey: wrongKey.privateKey }));
    const refused = env.gitServer!.counts.served;
    const err = await push(dir, `${env.gitServer!.origin}/${REPO}.git`, commit, 'agent/wrong-key', { rules: rules(env.gitServer!.origin), credentials }).then(
      () => assert.fail('the push went through'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof GitCredentialsError, String(err));
    assert.match(err.message, /GitHub App 4242 .*installation token for octo-org\/hello.*HTTP 401.*GITHUB_APP_PRIVATE_KEY_FILE/);
    assert.equal(err.retryable, false);
    assert.equal(env.gitServer!.counts.served, refused, 'git never reached the server with a credential');
    assert.equal(branchCommit(env.bare, 'agent/wrong-key'), null);
    assert.ok(!`${err.message} ${err.stack}`.includes(KEY_LINE) && !`${err.message}`.includes(wrongKey.privateKey.split('\n')[5]!));
  });

  it('clones and pushes with a personal access token as x-access-token', async () => {
    const server = await startGitHttpServer(path.dirname(path.dirname(env.bare)), 'x-access-token', PAT);
    try {
      const dir = path.join(tempDir('pat'), 'work');
      const credentials = githubGitCredentials(server.origin, clientsFor({ kind: 'token', token: PAT }));
      const opts = { rules: rules(server.origin), credentials };
      await clone(`${server.origin}/${REPO}.git`, 'main', dir, opts);
      const commit = await headCommit(dir);
      assert.equal(await push(dir, `${server.origin}/${REPO}.git`, commit, 'agent/with-pat', opts), 'pushed');
      assert.equal(branchCommit(env.bare, 'agent/with-pat'), commit);
      assert.ok(server.counts.unauthorized > 0 && server.counts.served > 0);
      const callFiles = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('agent-inbox-git-credential-'));
      assert.deepEqual(callFiles.flatMap((n) => filesHolding(path.join(os.tmpdir(), n), PAT)), [], 'each call\'s credential file is gone once git is done');
    } finally {
      await server.stop();
    }
    assert.ok(!logLines.join('\n').includes(PAT), 'no log line holds the token');
  });
});
