/**
 * Response bodies built from the description's own examples, with the fields that carry the fake's state
 * written over, so every body has GitHub's full shape and Prism's response validation applies to real data.
 */
import type { CheckRunRecord, CommitStatusRecord, FakeGithub, IssueCommentRecord, Permission, PullRecord, RepoRecord, ReviewCommentRecord, ReviewRecord } from './fake';
import { OPERATIONS, successExample, type Operation } from './spec';

/** A JSON value as the examples hold it. */
type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Turns the fake's records into GitHub response bodies. */
export class Bodies {
  private readonly examples = new Map<string, Json>();
  private readonly api: string;
  private readonly web: string;

  constructor(spec: Json, private readonly fake: FakeGithub) {
    for (const op of OPERATIONS) {
      if (op.method !== 'delete' || op.path.endsWith('{name}')) this.examples.set(key(op), successExample(spec, op));
    }
    this.api = String(spec.servers[0].url).replace(/\/$/, '');
    // GitHub's web host is its API host without the `api.` label.
    const apiUrl = new URL(this.api);
    this.web = `${apiUrl.protocol}//${apiUrl.hostname.replace(/^api\./, '')}`;
  }

  /** The full repository object. */
  repo(repo: RepoRecord): Json {
    const body = this.example('get', '/repos/{owner}/{repo}');
    Object.assign(body, {
      id: repo.id, node_id: nodeId('R', repo.id), name: repo.name, full_name: repo.fullName, private: repo.private,
      visibility: repo.private ? 'private' : 'public', default_branch: repo.defaultBranch,
      html_url: `${this.web}/${repo.fullName}`, url: `${this.api}/repos/${repo.fullName}`,
    });
    body.owner = this.user(body.owner, repo.owner);
    // The example is a fork whose `language` is missing although the schema requires it (nullable); the fake's
    // repositories are not forks, so the fork's `parent`/`source` go and `language` is filled in.
    delete body.parent;
    delete body.source;
    body.language ??= null;
    return body;
  }

  /** A pull request in the full shape (create, get, update). */
  pull(repo: RepoRecord, pull: PullRecord): Json {
    return this.fillPull(this.example('get', '/repos/{owner}/{repo}/pulls/{pull_number}'), repo, pull);
  }

  /** A pull request in the list's simple shape. */
  pullItem(repo: RepoRecord, pull: PullRecord): Json {
    return this.fillPull(this.example('get', '/repos/{owner}/{repo}/pulls')[0], repo, pull);
  }

  /** The result of a merge. */
  mergeResult(pull: PullRecord): Json {
    return { ...this.example('put', '/repos/{owner}/{repo}/pulls/{pull_number}/merge'), sha: pull.mergeCommitSha, merged: true };
  }

  /** A commit status. */
  commitStatus(repo: RepoRecord, status: CommitStatusRecord): Json {
    return {
      ...this.example('post', '/repos/{owner}/{repo}/statuses/{sha}'),
      id: status.id, node_id: nodeId('SC', status.id), state: status.state, context: status.context, description: status.description, target_url: status.targetUrl,
      url: `${this.api}/repos/${repo.fullName}/statuses/${status.sha}`,
    };
  }

  /** A check run. */
  checkRun(repo: RepoRecord, run: CheckRunRecord): Json {
    const body = this.example('post', '/repos/{owner}/{repo}/check-runs');
    Object.assign(body, {
      id: run.id, node_id: nodeId('CR', run.id), name: run.name, head_sha: run.headSha, status: run.status, conclusion: run.conclusion,
      details_url: run.detailsUrl, external_id: run.externalId,
      completed_at: run.status === 'completed' ? body.completed_at ?? new Date().toISOString() : null,
      url: `${this.api}/repos/${repo.fullName}/check-runs/${run.id}`, html_url: `${this.web}/${repo.fullName}/runs/${run.id}`,
      pull_requests: [],
    });
    Object.assign(body.output, run.output, { annotations_count: run.annotations?.length ?? 0, annotations_url: `${this.api}/repos/${repo.fullName}/check-runs/${run.id}/annotations` });
    return body;
  }

  /** The annotations of a check run. */
  checkAnnotations(repo: RepoRecord, run: CheckRunRecord): Json {
    const example = this.example('get', '/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations')[0];
    return (run.annotations ?? []).map((a) => ({
      ...example, path: a.path, start_line: a.line, end_line: a.line, start_column: null, end_column: null, annotation_level: a.level, title: a.title, message: a.message,
      raw_details: null, blob_href: `${this.web}/${repo.fullName}/blob/${run.headSha}/${a.path}`,
    }));
  }

  /** The check-run list of one commit. */
  checkRunList(repo: RepoRecord, runs: CheckRunRecord[]): Json {
    return { total_count: runs.length, check_runs: runs.map((run) => this.checkRun(repo, run)) };
  }

  /** A collaborator's permission; `role_name` follows the permission, as for the built-in roles. */
  permission(login: string, permission: Permission): Json {
    const body = this.example('get', '/repos/{owner}/{repo}/collaborators/{username}/permission');
    body.permission = permission;
    body.role_name = permission;
    body.user = this.user(body.user, login);
    if (body.user.permissions !== undefined) {
      body.user.permissions = { admin: permission === 'admin', maintain: permission === 'admin', push: permission === 'admin' || permission === 'write', triage: permission !== 'none', pull: permission !== 'none' };
    }
    body.user.role_name = permission;
    return body;
  }

  /** A pull request review. */
  review(repo: RepoRecord, review: ReviewRecord): Json {
    const body = this.example('get', '/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}');
    Object.assign(body, {
      id: review.id, node_id: nodeId('PRR', review.id), body: review.body, state: review.state, commit_id: review.commitId,
      html_url: `${this.web}/${repo.fullName}/pull/${review.pullNumber}#pullrequestreview-${review.id}`,
      pull_request_url: `${this.api}/repos/${repo.fullName}/pulls/${review.pullNumber}`,
    });
    body.user = this.user(body.user, review.reviewer);
    return body;
  }

  /** A review comment, in the shape of the review's comment list or of the pull request's comment list. */
  reviewComment(repo: RepoRecord, comment: ReviewCommentRecord, of: 'review' | 'pull'): Json {
    const template = of === 'review'
      ? this.example('get', '/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments')[0]
      : this.example('get', '/repos/{owner}/{repo}/pulls/{pull_number}/comments')[0];
    Object.assign(template, {
      id: comment.id, node_id: nodeId('PRRC', comment.id), pull_request_review_id: comment.reviewId, path: comment.path, line: comment.line,
      original_line: comment.line, body: comment.body, commit_id: this.fake.pull(repo.fullName, comment.pullNumber)?.head.sha ?? template.commit_id,
      url: `${this.api}/repos/${repo.fullName}/pulls/comments/${comment.id}`,
      html_url: `${this.web}/${repo.fullName}/pull/${comment.pullNumber}#discussion_r${comment.id}`,
      pull_request_url: `${this.api}/repos/${repo.fullName}/pulls/${comment.pullNumber}`,
    });
    template.user = this.user(template.user, comment.user);
    return template;
  }

  /** A conversation comment. */
  issueComment(repo: RepoRecord, comment: IssueCommentRecord): Json {
    const body = this.example('post', '/repos/{owner}/{repo}/issues/{issue_number}/comments');
    Object.assign(body, {
      id: comment.id, node_id: nodeId('IC', comment.id), body: comment.body,
      url: `${this.api}/repos/${repo.fullName}/issues/comments/${comment.id}`,
      html_url: `${this.web}/${repo.fullName}/issues/${comment.issueNumber}#issuecomment-${comment.id}`,
      issue_url: `${this.api}/repos/${repo.fullName}/issues/${comment.issueNumber}`,
    });
    body.user = this.user(body.user, comment.user);
    return body;
  }

  /** Label objects for label names (ids are stable per name). */
  labels(repo: RepoRecord, names: string[]): Json[] {
    const template = this.example('get', '/repos/{owner}/{repo}/issues/{issue_number}/labels')[0];
    return names.map((name) => ({
      ...structuredClone(template), id: labelId(name), node_id: nodeId('LA', labelId(name)), name, default: false,
      url: `${this.api}/repos/${repo.fullName}/labels/${encodeURIComponent(name)}`,
    }));
  }

  /** The authenticated user (`GET /user`). */
  authenticatedUser(login: string): Json {
    return { ...this.user(this.example('get', '/user'), login), type: login.endsWith('[bot]') ? 'Bot' : 'User' };
  }

  /** The authenticated App (`GET /app`). */
  app(slug: string): Json {
    return { ...this.example('get', '/app'), slug };
  }

  /** The GitHub App installation of a repository. */
  installation(repo: RepoRecord, id: number): Json {
    const body = this.example('get', '/repos/{owner}/{repo}/installation');
    body.id = id;
    body.access_tokens_url = `${this.api}/app/installations/${id}/access_tokens`;
    if (body.account !== null) body.account = this.user(body.account, repo.owner);
    return body;
  }

  /** A fresh installation access token and its expiry. */
  installationToken(token: string, expiresAt: string): Json {
    const body = this.example('post', '/app/installations/{installation_id}/access_tokens');
    body.token = token;
    body.expires_at = expiresAt;
    delete body.repositories;
    return body;
  }

  private fillPull(body: Json, repo: RepoRecord, pull: PullRecord): Json {
    const base = `${this.api}/repos/${repo.fullName}`;
    Object.assign(body, {
      id: pull.id, node_id: pullNodeId(pull.id), number: pull.number, title: pull.title, body: pull.body, state: pull.state, draft: pull.draft,
      url: `${base}/pulls/${pull.number}`, html_url: `${this.web}/${repo.fullName}/pull/${pull.number}`,
      diff_url: `${this.web}/${repo.fullName}/pull/${pull.number}.diff`, patch_url: `${this.web}/${repo.fullName}/pull/${pull.number}.patch`,
      issue_url: `${base}/issues/${pull.number}`, commits_url: `${base}/pulls/${pull.number}/commits`,
      review_comments_url: `${base}/pulls/${pull.number}/comments`, comments_url: `${base}/issues/${pull.number}/comments`,
      statuses_url: `${base}/statuses/${pull.head.sha}`, created_at: pull.createdAt, updated_at: pull.updatedAt,
      closed_at: pull.state === 'closed' ? pull.updatedAt : null, merged_at: pull.merged ? pull.updatedAt : null,
      merge_commit_sha: pull.mergeCommitSha, labels: this.labels(repo, this.fake.labels(repo.fullName, pull.number)),
      requested_reviewers: [], requested_teams: [], assignee: null, assignees: [], milestone: null,
    });
    if ('merged' in body) body.merged = pull.merged;
    if ('merged_by' in body) body.merged_by = pull.mergedBy === null ? null : this.user(body.merged_by ?? body.user, pull.mergedBy);
    body.user = this.user(body.user, pull.user);
    Object.assign(body.head, { ref: pull.head.ref, sha: pull.head.sha, label: `${pull.head.owner}:${pull.head.ref}` });
    Object.assign(body.base, { ref: pull.base.ref, sha: this.fake.branchSha(repo.fullName, pull.base.ref), label: `${repo.owner}:${pull.base.ref}` });
    body.head.repo = this.repoSummary(body.head.repo, repo);
    body.base.repo = this.repoSummary(body.base.repo, repo);
    return body;
  }

  private repoSummary(template: Json, repo: RepoRecord): Json {
    if (template === null) return null;
    Object.assign(template, { id: repo.id, name: repo.name, full_name: repo.fullName, private: repo.private, default_branch: repo.defaultBranch, html_url: `${this.web}/${repo.fullName}`, url: `${this.api}/repos/${repo.fullName}` });
    template.owner = this.user(template.owner, repo.owner);
    return template;
  }

  private user(template: Json, login: string): Json {
    return { ...template, login, html_url: `${this.web}/${encodeURIComponent(login)}`, url: `${this.api}/users/${encodeURIComponent(login)}` };
  }

  private example(method: Operation['method'], path: string): Json {
    const example = this.examples.get(key({ method, path }));
    if (example === undefined) throw new Error(`no example for ${method.toUpperCase()} ${path}`);
    return structuredClone(example);
  }
}

/** The GraphQL node id of a pull request; `pullIdOfNode` reverses it. */
export function pullNodeId(id: number): string {
  return nodeId('PR', id);
}

/** The database id a pull request node id names, or undefined when it names something else. */
export function pullIdOfNode(node: string): number | undefined {
  const match = /^PR_(.+)$/.exec(node);
  if (match === null) return undefined;
  const id = Number(Buffer.from(match[1], 'base64url').toString('utf8'));
  return Number.isSafeInteger(id) ? id : undefined;
}

function nodeId(prefix: string, id: number): string {
  return `${prefix}_${Buffer.from(String(id)).toString('base64url')}`;
}

/** A stable positive id for a label name. */
function labelId(name: string): number {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return hash + 1;
}

function key(op: Operation): string {
  return `${op.method} ${op.path}`;
}
