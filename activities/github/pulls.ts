/**
 * The pull-request side of GitHub: a task's round published as a pull request with its self-check on the head
 * commit, closing it, reading a review back, commenting. Every step looks before it writes, so an activity
 * retried after a crash finds what its first attempt made instead of making it twice.
 */
import type { Octokit } from '@octokit/rest';
import { ApplicationFailure } from '@temporalio/common';
import { SELF_CHECK_NAME } from '../../domain/checks';
import { STEERING_PERMISSIONS } from '../../domain/forge-comments';
import { boundedReview, type ForgePullRequests, type PublishPullRequest, type ReviewFeedback, type SelfCheckReport } from '../../domain/forge';
import type { Logger } from '../../workers/log';
import { activityFailure } from '../failures';
import { InvalidRepoNameError, splitRepo } from './client';

/** Longest pull request or comment body GitHub takes (characters). */
export const MAX_BODY_CHARS = 65_536;
/** Longest pull request title GitHub takes (characters). */
export const MAX_TITLE_CHARS = 256;
/** Longest check run summary or text GitHub takes (characters). */
export const MAX_CHECK_OUTPUT_CHARS = 65_535;
/** Longest commit status description GitHub takes (characters). */
export const MAX_STATUS_DESCRIPTION_CHARS = 140;
/** The self-check's name, defined with the rest of CI's contract (`domain/checks.ts`). */
export { SELF_CHECK_NAME };
/** Longest part of GitHub's own error message an error of ours repeats. */
const GITHUB_MESSAGE_CHARS = 300;
/** Most comments of one review read from the forge (to count what is left out; fewer are handed on), and the longest path kept of each. */
const MAX_REVIEW_COMMENTS = 500;
const MAX_PATH_CHARS = 1_000;
/** Results per page when listing (GitHub's maximum). */
const PER_PAGE = 100;

/** How publishing reports the self-check: a check run (GitHub Apps only), or a commit status (what a personal access token may write). */
export type SelfCheckAs = 'check_run' | 'commit_status';

/** What the pull-request side needs besides a client per repository. */
export interface GithubPullRequestOptions {
  /** The web inbox's URL (PUBLIC_URL): the body links to the task there; no link without it. */
  publicUrl?: string;
  /** Default `check_run`. */
  selfCheckAs?: SelfCheckAs;
  /**
   * The login the worker acts as: only a pull request it opened is taken as the task's (anyone who can read a
   * public repository can open one from the agent's branch).
   */
  selfLogin: () => Promise<string>;
  log?: Logger;
}

/** GitHub's pull-request side, reaching each repository with the client `octokitFor` gives for it. */
export function githubPullRequests(octokitFor: (repo: string) => Promise<Octokit>, opts: GithubPullRequestOptions): ForgePullRequests {
  const publicUrl = opts.publicUrl?.replace(/\/+$/, '');
  const selfCheckAs = opts.selfCheckAs ?? 'check_run';
  const log = opts.log;

  /** The client and the owner and name of `repo`, failing as GitHub's answers do. */
  const reach = async (repo: string) => {
    const [owner, name] = guarded('reach', repo, () => splitRepo(repo));
    const octokit = await call('find access to', repo, () => octokitFor(repo));
    return { octokit, owner, name };
  };

  return {
    async publish(input) {
      const { octokit, owner, name: repo } = await reach(input.repo);
      const at = { owner, repo };
      const body = pullRequestBody(input, publicUrl);
      const title = cut(input.title, MAX_TITLE_CHARS, '…');

      const self = await call('find the login of the worker on', input.repo, opts.selfLogin);
      const ours = (pr: { head: { ref: string }; base: { ref: string }; user: { login: string } | null; state: string }) =>
        pr.state === 'open' && pr.head.ref === input.head && pr.base.ref === input.base && pr.user?.login === self;
      const findOpen = async () => {
        // The task's own pull request once it has one; else the open one the worker opened from this head into this base.
        if (input.number !== undefined) {
          const { data } = await call('read pull request of', input.repo, () => octokit.rest.pulls.get({ ...at, pull_number: input.number! }));
          if (ours(data)) return data;
          // Closed on GitHub (its event never reached the task): no second pull request is opened behind it.
          throw activityFailure('ForgeRefused', `GitHub: pull request #${input.number} of ${input.repo} is ${data.merged ? 'merged' : data.state}; no other is opened for the task`);
        }
        const { data } = await call('list open pull requests of', input.repo, () =>
          octokit.rest.pulls.list({ ...at, state: 'open', head: `${owner}:${input.head}`, base: input.base, per_page: PER_PAGE }),
        );
        return data.find(ours) ?? null;
      };

      let created = false;
      let pr: { number: number; html_url: string; node_id: string; draft?: boolean } | null = await findOpen();
      if (pr !== null) {
        ({ data: pr } = await call('update pull request of', input.repo, () => octokit.rest.pulls.update({ ...at, pull_number: pr!.number, title, body })));
      } else {
        const open = (draft: boolean) => octokit.rest.pulls.create({ ...at, title, head: input.head, base: input.base, body, draft });
        try {
          ({ data: pr } = await open(true));
          created = true;
        } catch (err) {
          const message = githubMessage(err);
          if (statusOf(err) === 422 && /already exists/i.test(message)) {
            // An earlier attempt opened it (its answer lost to a crash or a 5xx): the open one is ours.
            pr = await findOpen();
            // Someone else's pull request holds the branch: never the task's to write to or to be ended by.
            if (pr === null) throw activityFailure('ForgeRefused', `GitHub: an open pull request from ${input.head} into ${input.base} on ${input.repo} was not opened by this worker; close it and retry`);
          } else if (statusOf(err) === 422 && /draft/i.test(message)) {
            // Repositories on plans without drafts refuse them: open it ready, the failing check says the rest.
            ({ data: pr } = await call('open a pull request on', input.repo, () => open(false)));
            created = true;
          } else {
            throw forgeFailure('open a pull request on', input.repo, err);
          }
        }
        log?.info('pull request opened', { repo: input.repo, number: pr.number, task_id: input.task_id, created });
      }

      const detailsUrl = publicUrl === undefined ? undefined : taskLink(publicUrl, input.task_id);
      if (selfCheckAs === 'check_run') {
        await reportCheckRun(octokit, at, input, detailsUrl);
      } else {
        await reportCommitStatus(octokit, at, input, detailsUrl);
      }

      let draft = pr.draft === true;
      if (draft && input.self_check.conclusion === 'success') {
        const pullRequestId = pr.node_id;
        await call('mark ready for review a pull request of', input.repo, () =>
          octokit.graphql('mutation($pullRequestId: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $pullRequestId}) { pullRequest { isDraft } } }', { pullRequestId }),
        );
        draft = false;
        log?.info('pull request marked ready', { repo: input.repo, number: pr.number, task_id: input.task_id });
      }
      return { number: pr.number, url: pr.html_url, created, draft };
    },

    async close({ repo: full, number, comment }) {
      const { octokit, owner, name: repo } = await reach(full);
      const at = { owner, repo };
      const { data: pr } = await call('read pull request of', full, () => octokit.rest.pulls.get({ ...at, pull_number: number }));
      if (pr.state !== 'closed') {
        await call('close pull request of', full, () => octokit.rest.pulls.update({ ...at, pull_number: number, state: 'closed' }));
        log?.info('pull request closed', { repo: full, number });
      }
      const text = cut(comment, MAX_BODY_CHARS, CUT_NOTE);
      // A retry after a crash finds the comment its first attempt posted.
      const comments = await call('list comments of', full, () => octokit.paginate(octokit.rest.issues.listComments, { ...at, issue_number: number, per_page: PER_PAGE }));
      if (!comments.some((c) => c.body === text)) {
        await call('comment on pull request of', full, () => octokit.rest.issues.createComment({ ...at, issue_number: number, body: text }));
      }
    },

    async reviewFeedback({ repo: full, number, review_id, reviewer }) {
      const { octokit, owner, name: repo } = await reach(full);
      const at = { owner, repo };
      const { data: review } = await call('read review of', full, () => octokit.rest.pulls.getReview({ ...at, pull_number: number, review_id }));
      // Whoever wrote the review is whose permission counts, whatever name the event carried.
      const author = review.user?.login ?? reviewer;
      const permission = await permissionOf(octokit, at, full, author);
      const allowed = STEERING_PERMISSIONS.has(permission);
      const state = review.state.toLowerCase();
      if (!allowed) {
        // A review requesting changes is answered whatever it holds: nothing of it is asked for.
        if (state !== 'commented') return { permission, allowed, state, body: '', comments: [] } satisfies ReviewFeedback;
        // A comment review: one comment at most is asked for, and none is read, only whether a refusal has something to answer.
        const { data: some } = await call('list review comments of', full, () => octokit.rest.pulls.listCommentsForReview({ ...at, pull_number: number, review_id, per_page: 1 }));
        return { permission, allowed, state, body: '', comments: [], has_comments: some.length > 0 } satisfies ReviewFeedback;
      }
      // Read up to MAX_REVIEW_COMMENTS (the pages stop there), enough to say how many were left out.
      let read = 0;
      const comments = await call('list review comments of', full, () =>
        octokit.paginate(octokit.rest.pulls.listCommentsForReview, { ...at, pull_number: number, review_id, per_page: PER_PAGE }, (response, done) => {
          read += response.data.length;
          if (read >= MAX_REVIEW_COMMENTS) done();
          return response.data;
        }),
      );
      return {
        permission,
        allowed,
        state,
        // Bounded to what a request for changes can pass on: the answer is kept in the task's history.
        ...boundedReview(review.body ?? '', comments.map((c) => ({ path: c.path.slice(0, MAX_PATH_CHARS), line: lineOf(c), body: c.body }))),
        has_comments: comments.length > 0,
      };
    },

    async comment({ repo: full, number, body }) {
      const { octokit, owner, name: repo } = await reach(full);
      await call('comment on pull request of', full, () => octokit.rest.issues.createComment({ owner, repo, issue_number: number, body: cut(body, MAX_BODY_CHARS, CUT_NOTE) }));
    },
  };
}

/** What is appended where a text is cut to GitHub's limit. */
const CUT_NOTE = '\n\n[the rest is cut: GitHub takes at most 65,536 characters]';

/** The pull request's body: the template's text, the inbox link and "Fixes #N", within {@link MAX_BODY_CHARS} (the text is cut, never the links). */
export function pullRequestBody(input: Pick<PublishPullRequest, 'task_id' | 'body' | 'fixes'>, publicUrl: string | undefined): string {
  const tail: string[] = [];
  if (publicUrl !== undefined) tail.push(`Review this round in the Agent Inbox: ${taskLink(publicUrl.replace(/\/+$/, ''), input.task_id)}`);
  if (input.fixes !== undefined) tail.push(`Fixes #${input.fixes}`);
  const suffix = tail.length === 0 ? '' : `\n\n---\n${tail.join('\n\n')}`;
  return cut(input.body.trimEnd(), MAX_BODY_CHARS - suffix.length, CUT_NOTE) + suffix;
}

/** `text` within `max` characters, ending with `note` where it was cut. */
function cut(text: string, max: number, note: string): string {
  return text.length <= max ? text : text.slice(0, max - note.length) + note;
}

/** Where the web inbox shows a task. */
function taskLink(publicUrl: string, taskId: string): string {
  return `${publicUrl}/tasks/${encodeURIComponent(taskId)}`;
}

type RepoAt = { owner: string; repo: string };

/** Reports the self-check as the check run {@link SELF_CHECK_NAME} on the commit, updating the one an earlier attempt made. */
async function reportCheckRun(octokit: Octokit, at: RepoAt, input: PublishPullRequest, detailsUrl: string | undefined): Promise<void> {
  const { data } = await call('list check runs of', input.repo, () =>
    octokit.rest.checks.listForRef({ ...at, ref: input.commit, check_name: SELF_CHECK_NAME, filter: 'all', per_page: PER_PAGE }),
  );
  const existing = data.check_runs.find((r) => r.name === SELF_CHECK_NAME && r.head_sha === input.commit);
  const fields = {
    ...at,
    status: 'completed' as const,
    conclusion: input.self_check.conclusion,
    output: checkOutput(input.self_check),
    ...(detailsUrl === undefined ? {} : { details_url: detailsUrl }),
  };
  if (existing !== undefined) {
    await call('update check run of', input.repo, () => octokit.rest.checks.update({ ...fields, check_run_id: existing.id }));
  } else {
    await call('create check run on', input.repo, () => octokit.rest.checks.create({ ...fields, name: SELF_CHECK_NAME, head_sha: input.commit, external_id: input.task_id }));
  }
}

/** The check run's output: a title naming the outcome, the one-line summary and the checks' text, each within GitHub's limits. */
function checkOutput(check: SelfCheckReport): { title: string; summary: string; text: string } {
  const title = check.conclusion === 'success' ? 'Self-check passed' : check.conclusion === 'failure' ? 'Self-check failed' : 'Self-check: nothing decided';
  const note = '\n\n[cut at GitHub\'s limit]';
  return { title, summary: cut(check.summary, MAX_CHECK_OUTPUT_CHARS, note), text: cut(check.text, MAX_CHECK_OUTPUT_CHARS, note) };
}

/** Reports the self-check as the commit status {@link SELF_CHECK_NAME}; the latest status of a context is the one shown, so repeating it is harmless. */
async function reportCommitStatus(octokit: Octokit, at: RepoAt, input: PublishPullRequest, detailsUrl: string | undefined): Promise<void> {
  const { conclusion, summary } = input.self_check;
  // A neutral self-check decided nothing; it should not block a merge a human decides on.
  const state = conclusion === 'failure' ? 'failure' : 'success';
  await call('set commit status on', input.repo, () =>
    octokit.rest.repos.createCommitStatus({
      ...at,
      sha: input.commit,
      state,
      context: SELF_CHECK_NAME,
      description: cut(summary, MAX_STATUS_DESCRIPTION_CHARS, '…'),
      ...(detailsUrl === undefined ? {} : { target_url: detailsUrl }),
    }),
  );
}

/** The base permission GitHub reports for `user` (`admin`, `write`, `read`, `none`); someone GitHub does not know has `none`. */
export async function permissionOf(octokit: Octokit, at: RepoAt, full: string, user: string): Promise<string> {
  try {
    const { data } = await octokit.rest.repos.getCollaboratorPermissionLevel({ ...at, username: user });
    // `permission` is the base role (maintain counts as write, triage as read); `role_name` may be a custom role's name, which says nothing by itself.
    return data.permission;
  } catch (err) {
    if (statusOf(err) === 404) return 'none';
    throw forgeFailure('read the permission of a reviewer on', full, err);
  }
}

/** The line a review comment is on: where it is now, or where it was when the code under it has changed since. */
function lineOf(c: { line?: number | null; original_line?: number | null }): number | null {
  return c.line ?? c.original_line ?? null;
}

/** The result of `fn`, or the failure saying which GitHub operation on `repo` failed and whether retrying can help. */
export async function call<T>(operation: string, repo: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw forgeFailure(operation, repo, err);
  }
}

/** Like {@link call} for a step that does not wait. */
export function guarded<T>(operation: string, repo: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw forgeFailure(operation, repo, err);
  }
}

/**
 * The activity failure for a GitHub error: `ForgeRefused` (not retried) for 4xx answers that will not change,
 * `ForgeFailed` (retried) for 5xx, timeouts, rate limits and requests that never reached GitHub.
 */
export function forgeFailure(operation: string, repo: string, err: unknown): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof InvalidRepoNameError) return activityFailure('InvalidInput', err.message);
  const status = statusOf(err);
  const message = githubMessage(err).slice(0, GITHUB_MESSAGE_CHARS);
  const what = `GitHub: ${operation} ${repo} failed`;
  if (isGraphqlError(err)) {
    const types = err.errors.map((e) => e.type ?? '');
    const retry = types.some((t) => t === 'RATE_LIMITED' || t === 'INTERNAL' || t === 'SERVICE_UNAVAILABLE');
    return activityFailure(retry ? 'ForgeFailed' : 'ForgeRefused', `${what}: ${message}`, { cause: err });
  }
  if (status === undefined) return activityFailure('ForgeFailed', `${what}: ${message}`, { cause: err });
  const retry = status >= 500 || status === 408 || status === 429 || (status === 403 && isRateLimited(err, message));
  return activityFailure(retry ? 'ForgeFailed' : 'ForgeRefused', `${what} (HTTP ${status}): ${message}`, { cause: err });
}

/** Whether a 403 is GitHub's rate limit (primary: no requests left; secondary: its message says so) rather than a refusal. */
function isRateLimited(err: unknown, message: string): boolean {
  const headers = (err as { response?: { headers?: Record<string, string | undefined> } }).response?.headers ?? {};
  return headers['x-ratelimit-remaining'] === '0' || /rate limit/i.test(message);
}

/** The HTTP status of a GitHub error, when it has one. */
export function statusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}

function githubMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isGraphqlError(err: unknown): err is Error & { errors: { type?: string; message: string }[] } {
  return err instanceof Error && err.name === 'GraphqlResponseError' && Array.isArray((err as { errors?: unknown }).errors);
}
