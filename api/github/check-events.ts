/**
 * GitHub's `check_run` and `check_suite` deliveries: a check completed with a failing conclusion on a commit of
 * the agent's own pull request is handed to the task whose branch it is. The delivery only says where to look:
 * the task takes it for its own pull request and the commit it last pushed, once per commit, and reads the
 * failing checks back from GitHub's API before the agent hears of them.
 */
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import { GithubRepoName } from '../../domain/access';
import { isFailing, MAX_CHECK_NAME_CHARS, SELF_CHECK_NAME, type ChecksFailed, type TaskChecksFailed } from '../../domain/checks';
import type { IntakeEvent } from '../../domain/forge';
import { preview } from '../../domain/rules';
import { RequestValidationError } from '../errors';
import { Sender, senderOf } from './payload';
import { forwardToTask, taskOfBranch, type Forwarded } from './pull-request-events';

/** A commit id as GitHub spells it. */
const Sha = z.string().regex(/^[0-9a-f]{40}$/, 'a commit id');
/** A pull request as check payloads list it: its head's branch and the repository that branch lives in (by id). */
const CheckPullRequest = z.object({
  number: z.number().int().positive(),
  head: z.object({ ref: z.string().min(1).max(255), repo: z.object({ id: z.number().int() }).nullable().optional() }),
});
/** Pull requests a delivery may list; more are refused (GitHub lists the few whose head is the commit). */
const MAX_LISTED_PULL_REQUESTS = 20;
const Repository = z.object({ id: z.number().int(), full_name: GithubRepoName });

/** The fields of a `check_run` delivery intake reads. */
const CheckRunPayload = z.object({
  action: z.string(),
  check_run: z.object({
    name: z.string().min(1),
    head_sha: Sha,
    status: z.string(),
    conclusion: z.string().nullable().optional(),
    pull_requests: z.array(CheckPullRequest).max(MAX_LISTED_PULL_REQUESTS).default([]),
  }),
  repository: Repository,
  sender: Sender,
});

/** The fields of a `check_suite` delivery intake reads. */
const CheckSuitePayload = z.object({
  action: z.string(),
  check_suite: z.object({
    head_branch: z.string().min(1).max(255).nullable().optional(),
    head_sha: Sha,
    status: z.string().nullable().optional(),
    conclusion: z.string().nullable().optional(),
    app: z.object({ slug: z.string().optional(), name: z.string().optional() }).nullable().optional(),
    pull_requests: z.array(CheckPullRequest).max(MAX_LISTED_PULL_REQUESTS).default([]),
  }),
  repository: Repository,
  sender: Sender,
});

/** The pull requests of `listed` whose head branch lives in `repositoryId` itself (a fork's branch is never the agent's). */
function ownTargets(listed: z.infer<typeof CheckPullRequest>[], repositoryId: number): ChecksFailed['targets'] {
  return listed.filter((p) => p.head.repo?.id === repositoryId).map((p) => ({ number: p.number, head: p.head.ref }));
}

/** A `check_run` delivery: a run completed with failure or timed out; the task's own self-check is not CI. */
export function checkRunEvent(deliveryId: string, payload: unknown): IntakeEvent {
  const parsed = CheckRunPayload.safeParse(payload);
  if (!parsed.success) throw new RequestValidationError('check_run payload', parsed.error);
  const p = parsed.data;
  const run = p.check_run;
  if (p.action !== 'completed') return { kind: 'ignored', delivery_id: deliveryId, reason: `check_run action ${p.action}` };
  if (!isFailing(run.conclusion)) return { kind: 'ignored', delivery_id: deliveryId, reason: `check run concluded ${run.conclusion ?? 'nothing'}` };
  if (run.name === SELF_CHECK_NAME) return { kind: 'ignored', delivery_id: deliveryId, reason: "the check run is the task's own self-check" };
  const targets = ownTargets(run.pull_requests, p.repository.id);
  if (targets.length === 0) return { kind: 'ignored', delivery_id: deliveryId, reason: 'the check run is on no pull request of the repository itself' };
  return { kind: 'checks_failed', delivery_id: deliveryId, repo: p.repository.full_name, head_sha: run.head_sha, check: preview(run.name, MAX_CHECK_NAME_CHARS), targets, sender: senderOf(p.sender) };
}

/** A `check_suite` delivery: a suite completed with failure or timed out, on its pull requests or else its head branch. */
export function checkSuiteEvent(deliveryId: string, payload: unknown): IntakeEvent {
  const parsed = CheckSuitePayload.safeParse(payload);
  if (!parsed.success) throw new RequestValidationError('check_suite payload', parsed.error);
  const p = parsed.data;
  const suite = p.check_suite;
  if (p.action !== 'completed') return { kind: 'ignored', delivery_id: deliveryId, reason: `check_suite action ${p.action}` };
  if (!isFailing(suite.conclusion)) return { kind: 'ignored', delivery_id: deliveryId, reason: `check suite concluded ${suite.conclusion ?? 'nothing'}` };
  let targets = ownTargets(suite.pull_requests, p.repository.id);
  // GitHub leaves the head branch null for a fork's suite: a branch it names is the repository's own.
  if (targets.length === 0 && suite.head_branch) targets = [{ number: null, head: suite.head_branch }];
  if (targets.length === 0) return { kind: 'ignored', delivery_id: deliveryId, reason: 'the check suite is on no branch of the repository itself' };
  const check = preview(suite.app?.name ?? suite.app?.slug ?? 'check suite', MAX_CHECK_NAME_CHARS);
  return { kind: 'checks_failed', delivery_id: deliveryId, repo: p.repository.full_name, head_sha: suite.head_sha, check, targets, sender: senderOf(p.sender) };
}

/**
 * Hands failing checks to the task each listed branch names, until one takes them (a commit is one task's:
 * the others refuse it); the answer is the first taker, or the last refusal.
 */
export async function forwardChecksFailed(client: Client, event: ChecksFailed): Promise<Forwarded> {
  let answer: Forwarded = { taken: false, reason: 'no listed branch is a task’s' };
  for (const target of event.targets) {
    const taskId = taskOfBranch(target.head);
    if (taskId === null) {
      answer = { taken: false, reason: `branch ${target.head} is not a task's` };
      continue;
    }
    const e: TaskChecksFailed = { kind: 'checks_failed', delivery_id: event.delivery_id, repo: event.repo, number: target.number, head_sha: event.head_sha, check: event.check };
    answer = await forwardToTask(client, taskId, e);
    if (answer.taken) return answer;
  }
  return answer;
}
