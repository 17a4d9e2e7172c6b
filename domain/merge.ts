/**
 * Merging a task's approved pull request on its forge: the methods an operator may turn on, what one attempt
 * comes to, and how long the workflow waits between attempts while the forge says "not yet".
 *
 * Pure module: no I/O, so the workflow bundle may import it.
 */

/** How the worker merges an approved pull request (GitHub's `merge_method`). */
export const MERGE_METHODS = ['merge', 'squash', 'rebase'] as const;
/** One of {@link MERGE_METHODS}. */
export type MergeMethod = (typeof MERGE_METHODS)[number];

/** What one merge attempt takes: the pull request, the commit the task pushed (only it is ever merged), and the method. */
export interface MergePullRequest {
  /** `owner/name`. */
  repo: string;
  number: number;
  /** The approved commit: the forge refuses the merge when the head is anything else. */
  sha: string;
  method: MergeMethod;
  /** The branch the approval was for (the task's base): a pull request retargeted since is not merged. Absent from workers before it was checked. */
  base?: string;
}

/**
 * What one merge attempt came to: merged (by this call, or found merged already), closed unmerged, not yet (the
 * forge may allow it later: required checks pending, reviews missing, a conflict), the head moved past the approved
 * commit, the pull request retargeted to another base than the approved one, or refused for good (the method is off for the repository). The reasons are the forge's own words, bounded.
 */
export type MergeAttempt =
  | { outcome: 'merged'; merge_sha: string | null; merged_at?: string; by?: string }
  | { outcome: 'closed'; by?: string }
  | { outcome: 'not_yet'; reason: string }
  | { outcome: 'head_moved'; reason: string }
  | { outcome: 'base_changed'; base: string }
  | { outcome: 'refused'; reason: string };

/** One forge's merge side. */
export interface ForgeMerges {
  /** Merges the pull request at exactly `sha` with `method`, or says why not; a pull request merged or closed already is reported, not merged again. */
  merge(input: MergePullRequest): Promise<MergeAttempt>;
}

/** Wait before the first retry of a merge the forge said was not possible yet (ms); it doubles after each refusal. */
export const MERGE_RETRY_FIRST_MS = 2_000;
/** Longest wait between two merge attempts (ms): required checks often take minutes. */
export const MERGE_RETRY_MAX_MS = 5 * 60_000;
/** Attempts before the worker stops and asks a human (with the waits above, about two hours of trying). */
export const MERGE_MAX_ATTEMPTS = 30;

/** The wait after the `attempt`-th refusal (1-based), doubling from {@link MERGE_RETRY_FIRST_MS} up to {@link MERGE_RETRY_MAX_MS}. */
export function mergeRetryDelayMs(attempt: number): number {
  const doublings = Math.min(Math.max(attempt - 1, 0), 30);
  return Math.min(MERGE_RETRY_FIRST_MS * 2 ** doublings, MERGE_RETRY_MAX_MS);
}

/** Whether a "cannot merge" answer will not change by waiting: the repository does not allow the method at all. */
export function isPermanentMergeRefusal(message: string): boolean {
  return /\bnot allowed on this repository\b/i.test(message);
}

/** Milliseconds from `from` to `to` (ISO times), never negative; null when either cannot be read. */
export function msBetween(from: string, to: string): number | null {
  const ms = Date.parse(to) - Date.parse(from);
  return Number.isFinite(ms) ? Math.max(0, ms) : null;
}
