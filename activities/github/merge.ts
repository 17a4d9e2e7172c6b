/**
 * The merge side of GitHub: an approved pull request merged at exactly the approved commit. It looks before it
 * writes, so an attempt retried after a crash finds the merge its first try made instead of reporting a refusal.
 */
import type { Octokit } from '@octokit/rest';
import { isPermanentMergeRefusal, type ForgeMerges, type MergeAttempt } from '../../domain/merge';
import type { Logger } from '../../workers/log';
import { splitRepo } from './client';
import { call, forgeFailure, guarded, statusOf } from './pulls';

/** Longest part of GitHub's refusal a merge attempt repeats. */
const REASON_CHARS = 300;

/** GitHub's merge side, reaching each repository with the client `octokitFor` gives for it. */
export function githubMerges(octokitFor: (repo: string) => Promise<Octokit>, opts: { log?: Logger } = {}): ForgeMerges {
  return {
    async merge(input): Promise<MergeAttempt> {
      const full = input.repo;
      const [owner, repo] = guarded('reach', full, () => splitRepo(full));
      const at = { owner, repo, pull_number: input.number };
      const octokit = await call('find access to', full, () => octokitFor(full));
      const { data: pr } = await call('read pull request of', full, () => octokit.rest.pulls.get(at));
      if (pr.merged) return { outcome: 'merged', merge_sha: pr.merge_commit_sha, ...(pr.merged_at ? { merged_at: pr.merged_at } : {}), ...(pr.merged_by ? { by: `github:${pr.merged_by.login}` } : {}) };
      if (pr.state === 'closed') return { outcome: 'closed' };
      // Anyone who may edit the pull request may retarget it: the approval was for the task's base, nothing else.
      if (input.base !== undefined && pr.base.ref !== input.base) return { outcome: 'base_changed', base: pr.base.ref.slice(0, REASON_CHARS) };
      try {
        // `sha` makes GitHub refuse (409) a head that moved since the approval, atomically with the merge.
        const { data } = await octokit.rest.pulls.merge({ ...at, sha: input.sha, merge_method: input.method });
        opts.log?.info('pull request merged', { repo: full, number: input.number, method: input.method, sha: input.sha });
        return { outcome: 'merged', merge_sha: data.sha ?? null };
      } catch (err) {
        const status = statusOf(err);
        const reason = refusal(err);
        if (status === 409) return { outcome: 'head_moved', reason };
        if (status === 405) return isPermanentMergeRefusal(reason) ? { outcome: 'refused', reason } : { outcome: 'not_yet', reason };
        throw forgeFailure('merge pull request of', full, err);
      }
    },
  };
}

/** GitHub's own words for a refused merge (the answer's `message`), bounded. */
function refusal(err: unknown): string {
  const data = (err as { response?: { data?: { message?: unknown } } }).response?.data;
  const message = typeof data?.message === 'string' ? data.message : err instanceof Error ? err.message : String(err);
  return message.slice(0, REASON_CHARS);
}
