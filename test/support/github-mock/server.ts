/**
 * The fake GitHub's HTTP side: the REST operations of the trimmed description and the one GraphQL mutation
 * the project sends, answering from a FakeGithub.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Bodies, pullIdOfNode, pullNodeId } from './bodies';
import { APP_BOT_LOGIN, APP_SLUG, fakeSha, INSTALLATION_ID, ACTOR_LOGIN, type FakeGithub, type PullRecord, type RepoRecord } from './fake';
import { OPERATIONS, type Operation } from './spec';

/** A JSON value as requests and responses carry it. */
type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** What a handler answers. */
interface Reply {
  status: number;
  body?: Json;
  headers?: Record<string, string>;
}

/** What a handler gets: path parameters, query, parsed body and the repository they name (when known). */
interface Call {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Json;
  repo: RepoRecord;
  /** Who the request's credential acts as. */
  actor: string;
}

/** A GitHub error answer; thrown by handlers, turned into `{message, documentation_url}` in one place. */
class GithubError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const DOCS_URL = 'https://docs.github.com/rest';
const GRAPHQL_PATH = '/graphql';
const READY_FOR_REVIEW = /\bmarkPullRequestReadyForReview\b/;

/** A running fake: its base URL and how to stop it. */
export interface FakeServer {
  url: string;
  close(): Promise<void>;
}

/** Starts the fake on a loopback port. */
export async function startFakeServer(fake: FakeGithub, spec: Json): Promise<FakeServer> {
  const bodies = new Bodies(spec, fake);
  const routes = buildRoutes(fake, bodies);
  const server = http.createServer((req, res) => {
    void serve(fake, routes, req)
      .catch((error: unknown) => ({ status: 500, body: { message: `fake GitHub failed: ${String(error)}`, documentation_url: DOCS_URL } }))
      .then((reply) => send(res, reply));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

type Handler = (call: Call) => Reply;

/** Who a request acts as: an installation token (`ghs_…`) is the App's bot, any other credential the token's owner. */
function actorOf(authorization: string | undefined): string {
  return /^(token|bearer) ghs_/i.test(authorization ?? '') ? APP_BOT_LOGIN : ACTOR_LOGIN;
}
interface Route { method: string; pattern: RegExp; names: string[]; handler: Handler }

async function serve(fake: FakeGithub, routes: Route[], req: http.IncomingMessage): Promise<Reply> {
  const reply = await answer(fake, routes, req);
  // Done, and never told: the caller waits until it gives up or dies.
  if (fake.takeLostAnswer(req.method ?? 'GET', new URL(req.url ?? '/', 'http://fake').pathname)) return new Promise<never>(() => undefined);
  return reply;
}

async function answer(fake: FakeGithub, routes: Route[], req: http.IncomingMessage): Promise<Reply> {
  const url = new URL(req.url ?? '/', 'http://fake');
  const method = req.method ?? 'GET';
  const raw = await readBody(req);
  let body: Json = null;
  try {
    body = raw === '' ? null : JSON.parse(raw);
  } catch {
    return errorReply(new GithubError(400, 'Problems parsing JSON'));
  }
  fake.requests.push({ method, path: url.pathname, query: Object.fromEntries(url.searchParams), body, authorization: req.headers.authorization });
  const failure = fake.takeFailure(method, url.pathname);
  if (failure !== undefined) return { status: failure.status, headers: failure.headers, body: { message: `planned failure ${failure.status}`, documentation_url: DOCS_URL } };
  try {
    if (APP_JWT_PATHS.test(url.pathname)) checkAppJwt(fake, req.headers.authorization);
    if (method === 'POST' && url.pathname === GRAPHQL_PATH) return graphql(fake, body);
    for (const route of routes) {
      const match = route.method === method ? route.pattern.exec(url.pathname) : null;
      if (match === null) continue;
      const params = Object.fromEntries(route.names.map((name, i) => [name, decodeURIComponent(match[i + 1])]));
      const repo = params.owner === undefined ? undefined : fake.repo(`${params.owner}/${params.repo}`);
      if (params.owner !== undefined && repo === undefined) throw new GithubError(404, 'Not Found');
      return route.handler({ params, query: url.searchParams, body, repo: repo as RepoRecord, actor: actorOf(req.headers.authorization) });
    }
    throw new GithubError(404, 'Not Found');
  } catch (error) {
    if (error instanceof GithubError) return errorReply(error);
    throw error;
  }
}

/** The endpoints only the App itself (its JWT) may call: `/app…` and a repository's installation. */
const APP_JWT_PATHS = /^\/app(\/|$)|^\/repos\/[^/]+\/[^/]+\/installation$/;

/** Refuses (401, as GitHub words it) a request to an App endpoint without a JWT the configured App signed (RS256) and that has not expired. */
function checkAppJwt(fake: FakeGithub, authorization: string | undefined): void {
  if (fake.app === null) return;
  const refused = new GithubError(401, 'A JSON web token could not be decoded');
  const m = /^bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/i.exec(authorization ?? '');
  if (m === null) throw refused;
  const [, head, claims, signature] = m as unknown as [string, string, string, string];
  const ok = crypto.verify('RSA-SHA256', Buffer.from(`${head}.${claims}`), fake.app.publicKey, Buffer.from(signature, 'base64url'));
  if (!ok) throw refused;
  const payload = JSON.parse(Buffer.from(claims, 'base64url').toString('utf8')) as { iss?: unknown; exp?: unknown };
  if (String(payload.iss) !== String(fake.app.id)) throw new GithubError(401, `'Issuer' claim ('iss') must be an Integer`);
  if (typeof payload.exp !== 'number' || payload.exp * 1000 < Date.now()) throw new GithubError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires");
}

function errorReply(error: GithubError): Reply {
  return { status: error.status, body: { message: error.message, documentation_url: DOCS_URL } };
}

function send(res: http.ServerResponse, reply: Reply): void {
  const headers: Record<string, string> = { ...reply.headers };
  if (reply.body !== undefined) headers['content-type'] = 'application/json; charset=utf-8';
  res.writeHead(reply.status, headers);
  res.end(reply.body === undefined ? undefined : JSON.stringify(reply.body));
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Answers the one mutation the project sends; anything else gets GraphQL's error shape. */
function graphql(fake: FakeGithub, body: Json): Reply {
  const query = typeof body?.query === 'string' ? body.query : '';
  if (!READY_FOR_REVIEW.test(query)) return { status: 200, body: { data: null, errors: [{ message: 'the fake GitHub does not answer this query', type: 'UNSUPPORTED' }] } };
  const nodeId = body.variables?.pullRequestId ?? body.variables?.input?.pullRequestId;
  const id = typeof nodeId === 'string' ? pullIdOfNode(nodeId) : undefined;
  const pull = id === undefined ? undefined : fake.findPull(id);
  if (pull === undefined) return { status: 200, body: { data: null, errors: [{ message: `Could not resolve to a node with the global id of '${String(nodeId)}'`, type: 'NOT_FOUND', path: ['markPullRequestReadyForReview'] }] } };
  pull.draft = false;
  pull.updatedAt = new Date().toISOString();
  return { status: 200, body: { data: { markPullRequestReadyForReview: { pullRequest: { id: pullNodeId(pull.id), isDraft: false, number: pull.number } } } } };
}

function buildRoutes(fake: FakeGithub, bodies: Bodies): Route[] {
  const pullOf = (call: Call): PullRecord => {
    const pull = fake.pull(call.repo.fullName, Number(call.params.pull_number));
    if (pull === undefined) throw new GithubError(404, 'Not Found');
    return pull;
  };
  const issueOf = (call: Call): number => {
    const number = Number(call.params.issue_number);
    if (!fake.hasIssue(call.repo.fullName, number)) throw new GithubError(404, 'Not Found');
    return number;
  };
  const handlers: Record<string, Handler> = {
    'get /repos/{owner}/{repo}': ({ repo }) => ({ status: 200, body: bodies.repo(repo) }),
    'get /repos/{owner}/{repo}/pulls': ({ repo, query }) => {
      const state = query.get('state') ?? 'open';
      const head = query.get('head');
      const base = query.get('base');
      const found = fake.pulls(repo.fullName).filter((p) => (state === 'all' || p.state === state)
        && (head === null || `${p.head.owner}:${p.head.ref}` === head) && (base === null || p.base.ref === base));
      return { status: 200, body: found.map((p) => bodies.pullItem(repo, p)) };
    },
    'get /user': ({ actor }) => ({ status: 200, body: bodies.authenticatedUser(actor) }),
    'get /app': () => ({ status: 200, body: bodies.app(APP_SLUG) }),
    'post /repos/{owner}/{repo}/pulls': ({ repo, body, actor }) => {
      const head = String(body.head);
      const headRef = head.includes(':') ? head.split(':', 2)[1] : head;
      const open = fake.pulls(repo.fullName).find((p) => p.state === 'open' && p.head.ref === headRef && p.base.ref === body.base);
      if (open !== undefined) throw new GithubError(422, `A pull request already exists for ${repo.owner}:${headRef}.`);
      const pull = fake.openPull(repo.fullName, { title: body.title, head, base: body.base, body: body.body, draft: body.draft, user: actor });
      return { status: 201, body: bodies.pull(repo, pull), headers: { location: `${bodies.pull(repo, pull).url}` } };
    },
    'get /repos/{owner}/{repo}/pulls/{pull_number}': (call) => ({ status: 200, body: bodies.pull(call.repo, pullOf(call)) }),
    'patch /repos/{owner}/{repo}/pulls/{pull_number}': (call) => {
      const pull = pullOf(call);
      if (typeof call.body.title === 'string') pull.title = call.body.title;
      if (typeof call.body.body === 'string') pull.body = call.body.body;
      if (call.body.state === 'open' || call.body.state === 'closed') pull.state = call.body.state;
      if (typeof call.body.base === 'string') pull.base.ref = call.body.base;
      pull.updatedAt = new Date().toISOString();
      return { status: 200, body: bodies.pull(call.repo, pull) };
    },
    'put /repos/{owner}/{repo}/pulls/{pull_number}/merge': (call) => {
      const pull = pullOf(call);
      const full = call.repo.fullName;
      if (pull.state !== 'open' || pull.draft) throw new GithubError(405, pull.draft ? 'Pull Request is still a draft' : 'Pull Request is not mergeable');
      if (typeof call.body?.sha === 'string' && call.body.sha !== pull.head.sha) throw new GithubError(409, 'Head branch was modified. Review and try the merge again.');
      const method = typeof call.body?.merge_method === 'string' ? call.body.merge_method : 'merge';
      if (!fake.mergeMethods(full).includes(method)) throw new GithubError(405, `${method === 'merge' ? 'Merge commits' : method === 'squash' ? 'Squash merges' : 'Rebase merges'} are not allowed on this repository.`);
      const held = fake.takeHeldMerge(full, pull.number);
      if (held !== undefined) throw new GithubError(405, held);
      Object.assign(pull, { merged: true, state: 'closed', mergeCommitSha: fakeSha(`merge:${full}#${pull.number}`), mergedBy: call.actor, updatedAt: new Date().toISOString() });
      fake.merges(full).push({ number: pull.number, sha: pull.head.sha, method, by: call.actor });
      fake.setBranch(full, pull.base.ref, pull.mergeCommitSha as string);
      return { status: 200, body: bodies.mergeResult(pull) };
    },
    'get /repos/{owner}/{repo}/commits/{ref}/check-runs': ({ repo, params, query }) => {
      const sha = /^[0-9a-f]{40}$/.test(params.ref) ? params.ref : fake.branchSha(repo.fullName, params.ref);
      const name = query.get('check_name');
      const runs = fake.checkRuns(repo.fullName).filter((r) => r.headSha === sha && (name === null || r.name === name));
      return { status: 200, body: bodies.checkRunList(repo, runs) };
    },
    'post /repos/{owner}/{repo}/statuses/{sha}': ({ repo, params, body }) => {
      const status = fake.addStatus(repo.fullName, { sha: params.sha, state: body.state, context: body.context ?? 'default', description: body.description ?? null, targetUrl: body.target_url ?? null });
      return { status: 201, body: bodies.commitStatus(repo, status) };
    },
    'post /repos/{owner}/{repo}/check-runs': ({ repo, body }) => {
      const run = fake.addCheckRun(repo.fullName, {
        name: body.name, headSha: body.head_sha, status: body.conclusion !== undefined ? 'completed' : body.status ?? 'queued', conclusion: body.conclusion ?? null,
        detailsUrl: body.details_url ?? null, externalId: body.external_id ?? null,
        output: { title: body.output?.title ?? null, summary: body.output?.summary ?? null, text: body.output?.text ?? null },
      });
      return { status: 201, body: bodies.checkRun(repo, run) };
    },
    'patch /repos/{owner}/{repo}/check-runs/{check_run_id}': ({ repo, params, body }) => {
      const run = fake.checkRuns(repo.fullName).find((r) => r.id === Number(params.check_run_id));
      if (run === undefined) throw new GithubError(404, 'Not Found');
      if (typeof body.name === 'string') run.name = body.name;
      if (typeof body.status === 'string') run.status = body.status;
      if (typeof body.conclusion === 'string') Object.assign(run, { conclusion: body.conclusion, status: 'completed' });
      if (typeof body.details_url === 'string') run.detailsUrl = body.details_url;
      if (body.output !== undefined) Object.assign(run.output, body.output);
      return { status: 200, body: bodies.checkRun(repo, run) };
    },
    'get /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations': ({ repo, params }) => {
      const run = fake.checkRuns(repo.fullName).find((r) => r.id === Number(params.check_run_id));
      if (run === undefined) throw new GithubError(404, 'Not Found');
      return { status: 200, body: bodies.checkAnnotations(repo, run) };
    },
    'get /repos/{owner}/{repo}/collaborators/{username}/permission': ({ repo, params }) => ({ status: 200, body: bodies.permission(params.username, fake.permission(repo.fullName, params.username)) }),
    'get /repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}': (call) => {
      const review = fake.reviews(call.repo.fullName).find((r) => r.id === Number(call.params.review_id) && r.pullNumber === pullOf(call).number);
      if (review === undefined) throw new GithubError(404, 'Not Found');
      return { status: 200, body: bodies.review(call.repo, review) };
    },
    'get /repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments': (call) => {
      const number = pullOf(call).number;
      const comments = fake.reviewComments(call.repo.fullName).filter((c) => c.reviewId === Number(call.params.review_id) && c.pullNumber === number);
      return { status: 200, body: comments.map((c) => bodies.reviewComment(call.repo, c, 'review')) };
    },
    'get /repos/{owner}/{repo}/pulls/{pull_number}/comments': (call) => {
      const number = pullOf(call).number;
      return { status: 200, body: fake.reviewComments(call.repo.fullName).filter((c) => c.pullNumber === number).map((c) => bodies.reviewComment(call.repo, c, 'pull')) };
    },
    'get /repos/{owner}/{repo}/issues/{issue_number}/comments': (call) => ({ status: 200, body: fake.comments(call.repo.fullName, issueOf(call)).map((c) => bodies.issueComment(call.repo, c)) }),
    'post /repos/{owner}/{repo}/issues/{issue_number}/comments': (call) => ({ status: 201, body: bodies.issueComment(call.repo, fake.addComment(call.repo.fullName, issueOf(call), call.body.body, call.actor)) }),
    'patch /repos/{owner}/{repo}/issues/comments/{comment_id}': ({ repo, params, body }) => {
      const comment = fake.allComments(repo.fullName).find((c) => c.id === Number(params.comment_id));
      if (comment === undefined) throw new GithubError(404, 'Not Found');
      comment.body = body.body;
      return { status: 200, body: bodies.issueComment(repo, comment) };
    },
    'get /repos/{owner}/{repo}/issues/{issue_number}/labels': (call) => ({ status: 200, body: bodies.labels(call.repo, fake.labels(call.repo.fullName, issueOf(call))) }),
    'post /repos/{owner}/{repo}/issues/{issue_number}/labels': (call) => {
      const labels = fake.labels(call.repo.fullName, issueOf(call));
      for (const name of labelNames(call.body)) if (!labels.includes(name)) labels.push(name);
      return { status: 200, body: bodies.labels(call.repo, labels) };
    },
    'delete /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}': (call) => {
      const labels = fake.labels(call.repo.fullName, issueOf(call));
      const at = labels.indexOf(call.params.name);
      if (at < 0) throw new GithubError(404, 'Label does not exist');
      labels.splice(at, 1);
      return { status: 200, body: bodies.labels(call.repo, labels) };
    },
    'delete /repos/{owner}/{repo}/git/refs/{ref}': ({ repo, params }) => {
      if (fake.deletedRefs(repo.fullName).includes(params.ref)) throw new GithubError(422, 'Reference does not exist');
      fake.deletedRefs(repo.fullName).push(params.ref);
      return { status: 204 };
    },
    'get /repos/{owner}/{repo}/installation': ({ repo }) => ({ status: 200, body: bodies.installation(repo, INSTALLATION_ID) }),
    'post /app/installations/{installation_id}/access_tokens': ({ params }) => {
      if (Number(params.installation_id) !== INSTALLATION_ID) throw new GithubError(404, 'Not Found');
      const issued = fake.issueInstallationToken();
      return { status: 201, body: bodies.installationToken(issued.token, new Date(issued.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z')) };
    },
  };
  return OPERATIONS.map((op) => route(op, handlers[`${op.method} ${op.path}`]));
}

function route(op: Operation, handler: Handler | undefined): Route {
  if (handler === undefined) throw new Error(`no handler for ${op.method.toUpperCase()} ${op.path}`);
  const names: string[] = [];
  const source = op.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_, name: string) => { names.push(name); return '([^/]+)'; });
  return { method: op.method.toUpperCase(), pattern: new RegExp(`^${source}$`), names, handler };
}

/** Label names from any of the body shapes the add-labels operation accepts. */
function labelNames(body: Json): string[] {
  const list = Array.isArray(body) ? body : body?.labels;
  if (!Array.isArray(list)) return [];
  return list.map((item: Json) => (typeof item === 'string' ? item : String(item?.name)));
}
