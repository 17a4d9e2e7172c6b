/**
 * GitHub's checks side: the latest check runs of a commit read back when a delivery says some failed, so what the
 * agent is told comes from GitHub's API and not from the delivery. Bounded everywhere (runs read, failing runs
 * kept, annotations per run, every text): CI output is as long as whoever wrote the build wants.
 */
import type { Octokit } from '@octokit/rest';
import {
  isFailing,
  MAX_ANNOTATION_CHARS,
  MAX_CHECK_ANNOTATIONS,
  MAX_CHECK_NAME_CHARS,
  MAX_CHECK_SUMMARY_CHARS,
  MAX_CHECK_TEXT_CHARS,
  MAX_CHECK_TITLE_CHARS,
  MAX_FAILED_CHECKS,
  SELF_CHECK_NAME,
  type CheckAnnotation,
  type CommitChecks,
  type FailedCheck,
  type ForgeChecks,
} from '../../domain/checks';
import { preview } from '../../domain/rules';
import { splitRepo } from './client';
import { call, guarded } from './pulls';

/** Results per page when listing (GitHub's maximum), and the most pages of check runs read for one commit. */
const PER_PAGE = 100;
const MAX_CHECK_RUN_PAGES = 5;
/** Longest annotation path kept. */
const MAX_ANNOTATION_PATH_CHARS = 500;
/** Annotation levels in the order they are kept: failures before warnings before notices. */
const LEVEL_ORDER = ['failure', 'warning', 'notice'];

/** GitHub's checks side, reaching each repository with the client `octokitFor` gives for it. */
export function githubChecks(octokitFor: (repo: string) => Promise<Octokit>): ForgeChecks {
  return {
    async commitChecks({ repo: full, commit }) {
      const [owner, repo] = guarded('reach', full, () => splitRepo(full));
      const octokit = await call('find access to', full, () => octokitFor(full));
      const at = { owner, repo };
      const runs: CheckRun[] = [];
      // `latest`: a re-run replaces the run it repeats, so a failure fixed by a re-run is not reported.
      const pages = octokit.paginate.iterator(octokit.rest.checks.listForRef, { ...at, ref: commit, filter: 'latest', per_page: PER_PAGE });
      await call('list check runs of', full, async () => {
        let page = 0;
        for await (const { data } of pages) {
          runs.push(...data);
          if (++page >= MAX_CHECK_RUN_PAGES) break;
        }
      });
      // The task's own self-check is what the round already knew, never CI's word on it.
      const theirs = runs.filter((r) => r.name !== SELF_CHECK_NAME && r.head_sha === commit);
      const failing = theirs.filter((r) => r.status === 'completed' && isFailing(r.conclusion));
      const failed: FailedCheck[] = [];
      for (const run of failing.slice(0, MAX_FAILED_CHECKS)) {
        const annotations = (run.output.annotations_count ?? 0) > 0 ? await call('list annotations of', full, () => annotationsOf(octokit, at, run.id)) : [];
        failed.push({
          name: preview(run.name, MAX_CHECK_NAME_CHARS),
          conclusion: run.conclusion ?? 'failure',
          // GitHub's own page of the run; `details_url` is whatever the app that made it says.
          url: run.html_url ?? null,
          title: preview(run.output.title ?? '', MAX_CHECK_TITLE_CHARS),
          summary: preview(run.output.summary ?? '', MAX_CHECK_SUMMARY_CHARS),
          text: preview(run.output.text ?? '', MAX_CHECK_TEXT_CHARS),
          annotations,
        });
      }
      return { head_sha: commit, failed, failed_count: failing.length, pending: theirs.filter((r) => r.status !== 'completed').length, read: runs.length } satisfies CommitChecks;
    },
  };
}

type CheckRun = Awaited<ReturnType<Octokit['rest']['checks']['listForRef']>>['data']['check_runs'][number];

/** The first page of a run's annotations, failures first, at most {@link MAX_CHECK_ANNOTATIONS}, each cut. */
async function annotationsOf(octokit: Octokit, at: { owner: string; repo: string }, checkRunId: number): Promise<CheckAnnotation[]> {
  const { data } = await octokit.rest.checks.listAnnotations({ ...at, check_run_id: checkRunId, per_page: PER_PAGE });
  const rank = (level: string | null) => {
    const i = LEVEL_ORDER.indexOf(level ?? '');
    return i < 0 ? LEVEL_ORDER.length : i;
  };
  return [...data]
    .sort((a, b) => rank(a.annotation_level) - rank(b.annotation_level))
    .slice(0, MAX_CHECK_ANNOTATIONS)
    .map((a) => ({
      path: preview(a.path, MAX_ANNOTATION_PATH_CHARS),
      line: a.start_line ?? null,
      level: a.annotation_level ?? 'notice',
      message: preview([a.title, a.message].filter((s) => s != null && s !== '').join(': '), MAX_ANNOTATION_CHARS),
    }));
}

