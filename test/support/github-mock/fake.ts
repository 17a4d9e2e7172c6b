/**
 * In-memory GitHub state the fake serves: repositories, pull requests, check runs, comments, labels,
 * permissions and reviews, seedable and inspectable by tests.
 */
import crypto from 'node:crypto';

/** A collaborator's permission as the permission endpoint reports it. */
export type Permission = 'admin' | 'write' | 'read' | 'none';

/** A repository the fake knows. */
export interface RepoRecord {
  id: number;
  owner: string;
  name: string;
  fullName: string;
  defaultBranch: string;
  private: boolean;
}

/** A pull request; it shares its number space with the repository's issues. */
export interface PullRecord {
  id: number;
  number: number;
  title: string;
  body: string | null;
  state: 'open' | 'closed';
  draft: boolean;
  merged: boolean;
  mergeCommitSha: string | null;
  head: { ref: string; sha: string; owner: string };
  base: { ref: string };
  user: string;
  createdAt: string;
  updatedAt: string;
}

/** A check run on a commit. */
export interface CheckRunRecord {
  id: number;
  name: string;
  headSha: string;
  status: string;
  conclusion: string | null;
  detailsUrl: string | null;
  externalId: string | null;
  output: { title: string | null; summary: string | null; text: string | null };
  /** What the run's output annotated (a CI's report of a failing line); none unless a test seeds them. */
  annotations?: CheckAnnotationRecord[];
}

/** An annotation of a check run's output. */
export interface CheckAnnotationRecord {
  path: string;
  line: number;
  level: 'notice' | 'warning' | 'failure';
  title: string | null;
  message: string;
}

/** A comment on an issue or a pull request's conversation. */
/** A commit status (what a token without the Checks API reports a self-check as). */
export interface CommitStatusRecord {
  id: number;
  sha: string;
  state: string;
  context: string;
  description: string | null;
  targetUrl: string | null;
}

export interface IssueCommentRecord {
  id: number;
  issueNumber: number;
  body: string;
  user: string;
}

/** A pull request review comment on a line of a file. */
export interface ReviewCommentRecord {
  id: number;
  reviewId: number;
  pullNumber: number;
  path: string;
  line: number;
  body: string;
  user: string;
}

/** A submitted pull request review. */
export interface ReviewRecord {
  id: number;
  pullNumber: number;
  reviewer: string;
  state: 'APPROVED' | 'CHANGES_REQUESTED' | 'COMMENTED';
  body: string;
  commitId: string;
}

/** A request the fake served, as it arrived (after Prism let it through). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  body: unknown;
  authorization: string | undefined;
}

/** A failure the fake answers instead of the next calls that match. */
interface PlannedFailure {
  method: string;
  pattern: RegExp;
  status: number;
  headers: Record<string, string>;
  remaining: number;
}

/** Everything the fake holds for one repository. */
interface RepoState {
  repo: RepoRecord;
  nextNumber: number;
  pulls: PullRecord[];
  checkRuns: CheckRunRecord[];
  statuses: CommitStatusRecord[];
  comments: IssueCommentRecord[];
  reviews: ReviewRecord[];
  reviewComments: ReviewCommentRecord[];
  labels: Map<number, string[]>;
  permissions: Map<string, Permission>;
  branches: Map<string, string>;
  deletedRefs: string[];
}

/** Login the fake attributes created pull requests, comments and check runs to (the token's owner). */
export const ACTOR_LOGIN = 'agent-inbox-bot';
/** The App's slug; an installation token acts as `<slug>[bot]`. */
export const APP_SLUG = 'agent-inbox';
/** Who an installation token acts as. */
export const APP_BOT_LOGIN = `${APP_SLUG}[bot]`;
/** Installation id the fake reports for every repository. */
export const INSTALLATION_ID = 1;
/** Lifetime of an installation access token, as GitHub issues them. */
export const INSTALLATION_TOKEN_TTL_MS = 60 * 60 * 1000;
const FIRST_ID = 1000;

/** A GitHub-looking hex object id, stable for what it names. */
export function fakeSha(seed: string): string {
  return crypto.createHash('sha1').update(seed).digest('hex');
}

/** The fake's state; the HTTP side reads and changes it, tests seed and inspect it. */
export class FakeGithub {
  /** Every request the fake served, in order. */
  readonly requests: RecordedRequest[] = [];
  private readonly repos = new Map<string, RepoState>();
  private readonly failures: PlannedFailure[] = [];
  private nextId = FIRST_ID;

  /** Adds a repository (`owner/name`); its default branch exists with a stable head commit. */
  addRepo(fullName: string, options: { default_branch?: string; private?: boolean } = {}): RepoRecord {
    const [owner, name] = fullName.split('/');
    if (!owner || !name) throw new Error(`repository must be owner/name, got ${fullName}`);
    const repo: RepoRecord = { id: this.id(), owner, name, fullName, defaultBranch: options.default_branch ?? 'main', private: options.private ?? false };
    this.repos.set(fullName, {
      repo, nextNumber: 1, pulls: [], checkRuns: [], statuses: [], comments: [], reviews: [], reviewComments: [],
      labels: new Map(), permissions: new Map(), branches: new Map([[repo.defaultBranch, fakeSha(`${fullName}:${repo.defaultBranch}`)]]), deletedRefs: [],
    });
    return repo;
  }

  /** Sets what the permission endpoint answers for `login` on `repo`. */
  setPermission(repo: string, login: string, permission: Permission): void {
    this.state(repo).permissions.set(login, permission);
  }

  /** Sets the head commit of a branch (pull requests opened from it carry this sha). */
  setBranch(repo: string, branch: string, sha: string): void {
    this.state(repo).branches.set(branch, sha);
  }

  /** Adds an issue number (for comments and labels on an issue that is not a pull request). */
  addIssue(repo: string): number {
    return this.state(repo).nextNumber++;
  }

  /** Submits a review with line comments on a pull request; returns the review id. */
  addReview(repo: string, number: number, review: { reviewer: string; state: ReviewRecord['state']; body?: string; comments?: { path: string; line: number; body: string }[] }): number {
    const s = this.state(repo);
    const pull = this.pull(repo, number);
    if (pull === undefined) throw new Error(`${repo} has no pull request #${number}`);
    const id = this.id();
    s.reviews.push({ id, pullNumber: number, reviewer: review.reviewer, state: review.state, body: review.body ?? '', commitId: pull.head.sha });
    for (const c of review.comments ?? []) {
      s.reviewComments.push({ id: this.id(), reviewId: id, pullNumber: number, path: c.path, line: c.line, body: c.body, user: review.reviewer });
    }
    return id;
  }

  /** Makes the next `count` calls of `method` on a path matching `pathPattern` answer `status` (with `headers`). */
  failNext(method: string, pathPattern: string | RegExp, status: number, count = 1, headers: Record<string, string> = {}): void {
    const pattern = typeof pathPattern === 'string' ? new RegExp(`^${pathPattern.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`) : pathPattern;
    this.failures.push({ method: method.toUpperCase(), pattern, status, headers, remaining: count });
  }

  /** The planned failure for this call, if any, counting it down. */
  takeFailure(method: string, path: string): { status: number; headers: Record<string, string> } | undefined {
    const failure = this.failures.find((f) => f.remaining > 0 && f.method === method && f.pattern.test(path));
    if (failure === undefined) return undefined;
    failure.remaining -= 1;
    return { status: failure.status, headers: failure.headers };
  }

  /** The repository's record, or undefined when the fake does not know it. */
  repo(repo: string): RepoRecord | undefined {
    return this.repos.get(repo)?.repo;
  }

  /** Pull requests of a repository, oldest first. */
  pulls(repo: string): PullRecord[] {
    return this.state(repo).pulls;
  }

  /** One pull request by number. */
  pull(repo: string, number: number): PullRecord | undefined {
    return this.state(repo).pulls.find((p) => p.number === number);
  }

  /** A pull request of any repository by its database id. */
  findPull(id: number): PullRecord | undefined {
    for (const s of this.repos.values()) {
      const pull = s.pulls.find((p) => p.id === id);
      if (pull !== undefined) return pull;
    }
    return undefined;
  }

  /** Check runs of a repository, oldest first. */
  checkRuns(repo: string): CheckRunRecord[] {
    return this.state(repo).checkRuns;
  }

  /** Conversation comments on an issue or pull request, oldest first. */
  comments(repo: string, number: number): IssueCommentRecord[] {
    return this.state(repo).comments.filter((c) => c.issueNumber === number);
  }

  /** Every conversation comment of a repository (for finding one by id). */
  allComments(repo: string): IssueCommentRecord[] {
    return this.state(repo).comments;
  }

  /** Label names on an issue or pull request. */
  labels(repo: string, number: number): string[] {
    const s = this.state(repo);
    if (!s.labels.has(number)) s.labels.set(number, []);
    return s.labels.get(number)!;
  }

  /** Reviews of a repository. */
  reviews(repo: string): ReviewRecord[] {
    return this.state(repo).reviews;
  }

  /** Review comments of a repository. */
  reviewComments(repo: string): ReviewCommentRecord[] {
    return this.state(repo).reviewComments;
  }

  /** A login's permission on a repository; someone never granted one has none. */
  permission(repo: string, login: string): Permission {
    return this.state(repo).permissions.get(login) ?? 'none';
  }

  /** Refs deleted through the API (`heads/branch`), in order. */
  deletedRefs(repo: string): string[] {
    return this.state(repo).deletedRefs;
  }

  /** Whether `number` names an issue or pull request of the repository. */
  hasIssue(repo: string, number: number): boolean {
    return number >= 1 && number < this.state(repo).nextNumber;
  }

  /** Head commit of a branch; a branch never seeded gets a stable made-up commit. */
  branchSha(repo: string, branch: string): string {
    return this.state(repo).branches.get(branch) ?? fakeSha(`${repo}:${branch}`);
  }

  /** Opens a pull request. */
  openPull(repo: string, input: { title: string; head: string; base: string; body?: string | null; draft?: boolean; user?: string }): PullRecord {
    const s = this.state(repo);
    const [headOwner, headRef] = input.head.includes(':') ? input.head.split(':', 2) : [s.repo.owner, input.head];
    const now = new Date().toISOString();
    const pull: PullRecord = {
      id: this.id(), number: s.nextNumber++, title: input.title, body: input.body ?? null, state: 'open', draft: input.draft ?? false,
      merged: false, mergeCommitSha: null, head: { ref: headRef, sha: this.branchSha(repo, headRef), owner: headOwner }, base: { ref: input.base },
      user: input.user ?? ACTOR_LOGIN, createdAt: now, updatedAt: now,
    };
    s.pulls.push(pull);
    return pull;
  }

  /** Records a commit status. */
  addStatus(repo: string, status: Omit<CommitStatusRecord, 'id'>): CommitStatusRecord {
    const record = { id: this.id(), ...status };
    this.state(repo).statuses.push(record);
    return record;
  }

  /** Commit statuses, oldest first. */
  statuses(repo: string): CommitStatusRecord[] {
    return this.state(repo).statuses;
  }

  /** Records a check run. */
  addCheckRun(repo: string, run: Omit<CheckRunRecord, 'id'>): CheckRunRecord {
    const record = { id: this.id(), ...run };
    this.state(repo).checkRuns.push(record);
    return record;
  }

  /** Records a conversation comment. */
  addComment(repo: string, issueNumber: number, body: string, user = ACTOR_LOGIN): IssueCommentRecord {
    const record = { id: this.id(), issueNumber, body, user };
    this.state(repo).comments.push(record);
    return record;
  }

  /** A fresh id, unique across everything the fake holds. */
  id(): number {
    return this.nextId++;
  }

  private state(repo: string): RepoState {
    const s = this.repos.get(repo);
    if (s === undefined) throw new Error(`the fake has no repository ${repo}; seed it with addRepo`);
    return s;
  }
}
