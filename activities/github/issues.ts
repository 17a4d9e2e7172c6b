/**
 * The issue side of GitHub: a task's source issue kept mirroring it, with one `agent:*` label and one status
 * comment edited in place. Every write looks first, so a call retried after a crash neither doubles the comment
 * nor leaves two labels.
 */
import type { Octokit } from '@octokit/rest';
import { MIRROR_LABELS, statusComment, statusMarker, type ForgeIssues, type MirrorIssue } from '../../domain/forge-mirror';
import type { Logger } from '../../workers/log';
import { splitRepo } from './client';
import { forgeFailure } from './pulls';

/** Results per page when listing (GitHub's maximum). */
const PER_PAGE = 100;
/** The status GitHub answers for a label the issue does not carry (any more). */
const NOT_FOUND = 404;
/** Label names compare without case on GitHub: `Agent:Done` is the label `agent:done`. */
const OWNED_LABELS: ReadonlySet<string> = new Set(MIRROR_LABELS.map((l) => l.toLowerCase()));

/** What the issue side needs besides a client per repository. */
export interface GithubIssueOptions {
  /** The web inbox's URL (PUBLIC_URL): the status comment links to the task there; no link without it. */
  publicUrl?: string;
  /** The login the worker acts as: only a comment it wrote is ever edited (anyone may post one carrying the marker). */
  selfLogin: () => Promise<string>;
  log?: Logger;
}

/** GitHub's issue side, reaching each repository with the client `octokitFor` gives for it. */
export function githubIssues(octokitFor: (repo: string) => Promise<Octokit>, opts: GithubIssueOptions): ForgeIssues {
  const publicUrl = opts.publicUrl?.replace(/\/+$/, '');
  return {
    async mirrorIssue(input: MirrorIssue) {
      const full = input.repo;
      const [owner, repo] = guarded('reach', full, () => splitRepo(full));
      const octokit = await call('find access to', full, () => octokitFor(full));
      const at = { owner, repo, issue_number: input.issue };
      await setLabel(octokit, at, full, input.mirror.label);
      const mirror = publicUrl === undefined ? input.mirror : { ...input.mirror, inbox_url: `${publicUrl}/tasks/${encodeURIComponent(input.task_id)}` };
      const body = statusComment(mirror, input.task_id);
      const comment_id = await writeComment(octokit, at, input, body, opts.selfLogin);
      opts.log?.debug('issue mirrored', { repo: full, issue: input.issue, task_id: input.task_id, label: input.mirror.label, comment_id });
      return { comment_id };
    },
  };
}

type IssueAt = { owner: string; repo: string; issue_number: number };

/** Leaves `label` the issue's only label of {@link MIRROR_LABELS} (none when null); every other label stays as it is. */
async function setLabel(octokit: Octokit, at: IssueAt, full: string, label: string | null): Promise<void> {
  const labels = await call('list labels of an issue of', full, () => octokit.paginate(octokit.rest.issues.listLabelsOnIssue, { ...at, per_page: PER_PAGE }));
  const names = labels.map((l) => l.name);
  for (const name of names) {
    // Only the five names the backend owns, compared as GitHub compares them; a human's label is never one.
    if (!OWNED_LABELS.has(name.toLowerCase()) || name.toLowerCase() === label) continue;
    try {
      await octokit.rest.issues.removeLabel({ ...at, name });
    } catch (err) {
      // Removed meanwhile (by a human, or by an attempt whose answer was lost): what was wanted.
      if (statusOf(err) !== NOT_FOUND) throw forgeFailure('remove a label from an issue of', full, err);
    }
  }
  if (label !== null && !names.some((n) => n.toLowerCase() === label)) {
    await call('label an issue of', full, () => octokit.rest.issues.addLabels({ ...at, labels: [label] }));
  }
}

/** Edits the task's status comment (the known one, else the worker's own carrying the task's marker) or posts it; returns its id. */
async function writeComment(octokit: Octokit, at: IssueAt, input: MirrorIssue, body: string, selfLogin: () => Promise<string>): Promise<number> {
  const full = input.repo;
  const edit = async (comment_id: number) => {
    await call('edit a comment on an issue of', full, () => octokit.rest.issues.updateComment({ owner: at.owner, repo: at.repo, comment_id, body }));
    return comment_id;
  };
  if (input.comment_id !== undefined) {
    try {
      await octokit.rest.issues.updateComment({ owner: at.owner, repo: at.repo, comment_id: input.comment_id, body });
      return input.comment_id;
    } catch (err) {
      // Deleted on GitHub: look for it (or post it again) below.
      if (statusOf(err) !== NOT_FOUND) throw forgeFailure('edit a comment on an issue of', full, err);
    }
  }
  const self = await call('find the login of the worker on', full, selfLogin);
  const marker = statusMarker(input.task_id);
  const comments = await call('list comments of an issue of', full, () => octokit.paginate(octokit.rest.issues.listComments, { ...at, per_page: PER_PAGE }));
  // A stranger can post the marker too: only the worker's own comment is the task's.
  const own = comments.find((c) => c.user?.login === self && (c.body ?? '').startsWith(marker));
  if (own !== undefined) return edit(own.id);
  const { data } = await call('comment on an issue of', full, () => octokit.rest.issues.createComment({ ...at, body }));
  return data.id;
}

/** The result of `fn`, or the failure saying which GitHub operation on `repo` failed and whether retrying can help. */
async function call<T>(operation: string, repo: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw forgeFailure(operation, repo, err);
  }
}

/** Like {@link call} for a step that does not wait. */
function guarded<T>(operation: string, repo: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw forgeFailure(operation, repo, err);
  }
}

function statusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
}
