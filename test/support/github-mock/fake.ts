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
  /** Who merged it (the credential's login), once merged through the API. */
  mergedBy: string | null;
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

/** A merge the fake performed: which pull request, at which head, how. */
export interface MergeRecord {
  number: number;
  sha: string;
  method: string;
  by: string;
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
  /** Where branch heads really are (a git repository), when a test follows one; else `branches`. */
  gitHeads?: (branch: string) => string | null;
  merges: MergeRecord[];
  /** Merge attempts still refused per pull request number, with the refusal GitHub gives (required checks pending). */
  heldMerges: Map<number, { remaining: number; message: string }>;
  /** Merge methods the repository allows (GitHub's "Allow merge commits / squash / rebase" settings). */
  mergeMethods: string[];
  /** Called with each pull request as it opens, before GitHub answers (a test's CI reporting on its head at once). */
  pullOpened?: (pull: PullRecord) => void;
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

/** An installation access token the fake issued, and when it stops working (ms since the epoch). */
export interface IssuedToken {
  token: string;
  expiresAt: number;
}

/** The fake's state; the HTTP side reads and changes it, tests seed and inspect it. */
export class FakeGithub {
  /** Every request the fake served, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Installation tokens issued, oldest first. */
  readonly issuedTokens: IssuedToken[] = [];
  /** How long a token issued from now on lasts (GitHub: an hour). */
  installationTokenTtlMs = INSTALLATION_TOKEN_TTL_MS;
  /** The App whose JWT the App's own endpoints require, once {@link setApp} named it; before that any bearer passes. */
  app: { id: number; publicKey: crypto.KeyObject } | null = null;
  private readonly repos = new Map<string, RepoState>();
  private readonly failures: PlannedFailure[] = [];
  private readonly lostAnswers: { method: string; pattern: RegExp; remaining: number }[] = [];
  private nextId = FIRST_ID;

  /** Adds a repository (`owner/name`); its default branch exists with a stable head commit. */
  addRepo(fullName: string, options: { default_branch?: string; private?: boolean } = {}): RepoRecord {
    const [owner, name] = fullName.split('/');
    if (!owner || !name) throw new Error(`repository must be owner/name, got ${fullName}`);
    const repo: RepoRecord = { id: this.id(), owner, name, fullName, defaultBranch: options.default_branch ?? 'main', private: options.private ?? false };
    this.repos.set(fullName, {
      repo, nextNumber: 1, pulls: [], checkRuns: [], statuses: [], comments: [], reviews: [], reviewComments: [],
      labels: new Map(), permissions: new Map(), branches: new Map([[repo.defaultBranch, fakeSha(`${fullName}:${repo.defaultBranch}`)]]), deletedRefs: [],
      merges: [], heldMerges: new Map(), mergeMethods: ['merge', 'squash', 'rebase'],
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

  /**
   * Takes the repository's branch heads from `heads` (a git repository's refs) instead of the seeded ones, and keeps
   * each open pull request's head on its branch, as GitHub does when someone pushes to it.
   */
  followGit(repo: string, heads: (branch: string) => string | null): void {
    this.state(repo).gitHeads = heads;
  }

  /** Calls `hook` with each pull request opened in `repo` from now on, as it opens and before GitHub answers; `undefined` stops it. */
  whenPullOpens(repo: string, hook: ((pull: PullRecord) => void) | undefined): void {
    this.state(repo).pullOpened = hook;
  }

  /** Makes the next `attempts` merges of pull request `number` answer 405 with `message`, as GitHub does while required checks are pending. */
  holdMerges(repo: string, number: number, attempts: number, message = 'Required status check "ci" is expected.'): void {
    this.state(repo).heldMerges.set(number, { remaining: attempts, message });
  }

  /** Takes one held merge attempt of pull request `number`: the refusal to answer, or undefined when it is not held. */
  takeHeldMerge(repo: string, number: number): string | undefined {
    const held = this.state(repo).heldMerges.get(number);
    if (held === undefined || held.remaining <= 0) return undefined;
    held.remaining -= 1;
    return held.message;
  }

  /** Sets the merge methods the repository allows; a merge with another is refused (405) for good. */
  setMergeMethods(repo: string, methods: string[]): void {
    this.state(repo).mergeMethods = methods;
  }

  /** The merge methods the repository allows. */
  mergeMethods(repo: string): string[] {
    return this.state(repo).mergeMethods;
  }

  /** Merges performed through the API, in order. */
  merges(repo: string): MergeRecord[] {
    return this.state(repo).merges;
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

  /**
   * Makes the next call of `method` on a path matching `pathPattern` take effect and never be answered: the answer
   * lost as when the caller dies while GitHub works (the connection stays open until the caller goes away).
   */
  loseAnswerNext(method: string, pathPattern: RegExp): void {
    this.lostAnswers.push({ method: method.toUpperCase(), pattern: pathPattern, remaining: 1 });
  }

  /** Whether this call's answer is to be lost, counting it down. */
  takeLostAnswer(method: string, path: string): boolean {
    const lost = this.lostAnswers.find((f) => f.remaining > 0 && f.method === method && f.pattern.test(path));
    if (lost === undefined) return false;
    lost.remaining -= 1;
    return true;
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
    const s = this.state(repo);
    for (const p of s.pulls) this.followHead(s, p);
    return s.pulls;
  }

  /** One pull request by number. */
  pull(repo: string, number: number): PullRecord | undefined {
    const s = this.state(repo);
    const pull = s.pulls.find((p) => p.number === number);
    if (pull !== undefined) this.followHead(s, pull);
    return pull;
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

  /** Head commit of a branch (from the followed git repository, if any); a branch never seeded gets a stable made-up commit. */
  branchSha(repo: string, branch: string): string {
    const s = this.state(repo);
    return s.gitHeads?.(branch) ?? s.branches.get(branch) ?? fakeSha(`${repo}:${branch}`);
  }

  /** Moves an open pull request's head to where its branch is in the followed git repository. */
  private followHead(s: RepoState, pull: PullRecord): void {
    if (s.gitHeads === undefined || pull.state !== 'open' || pull.head.owner !== s.repo.owner) return;
    const sha = s.gitHeads(pull.head.ref);
    if (sha !== null) pull.head.sha = sha;
  }

  /** Opens a pull request. */
  openPull(repo: string, input: { title: string; head: string; base: string; body?: string | null; draft?: boolean; user?: string }): PullRecord {
    const s = this.state(repo);
    const [headOwner, headRef] = input.head.includes(':') ? input.head.split(':', 2) : [s.repo.owner, input.head];
    const now = new Date().toISOString();
    const pull: PullRecord = {
      id: this.id(), number: s.nextNumber++, title: input.title, body: input.body ?? null, state: 'open', draft: input.draft ?? false,
      merged: false, mergeCommitSha: null, mergedBy: null, head: { ref: headRef, sha: this.branchSha(repo, headRef), owner: headOwner }, base: { ref: input.base },
      user: input.user ?? ACTOR_LOGIN, createdAt: now, updatedAt: now,
    };
    s.pulls.push(pull);
    s.pullOpened?.(pull);
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

  /** Makes the App's own endpoints require a JWT signed by `publicKeyPem`'s private key with `iss` = `id`, as GitHub does. */
  setApp(id: number, publicKeyPem: string): void {
    this.app = { id, publicKey: crypto.createPublicKey(publicKeyPem) };
  }

  /** Issues an installation token lasting {@link installationTokenTtlMs}. */
  issueInstallationToken(): IssuedToken {
    const issued = { token: `ghs_${crypto.randomBytes(18).toString('hex')}`, expiresAt: Date.now() + this.installationTokenTtlMs };
    this.issuedTokens.push(issued);
    return issued;
  }

  /** Whether `token` is an installation token the fake issued that has not expired. */
  acceptsInstallationToken(token: string): boolean {
    return this.issuedTokens.some((t) => t.token === token && t.expiresAt > Date.now());
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
