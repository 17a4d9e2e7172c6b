/**
 * `POST /v1/webhooks/github`: GitHub's deliveries, authenticated by their signature instead of a bearer token, so
 * this router is mounted before `/v1`'s authentication and answers that one path and method only.
 */
import { Router, type Response } from 'express';
import { githubRepoSettings, principalOf, type Identity } from '../../domain/access';
import { BUDGET_PRESETS, budgetPresetOf } from '../../domain/budget-presets';
import { issueGoal } from '../../domain/forge';
import { commentGoal, notAllowedCommentReply, STEERING_PERMISSIONS, type IssueCommented } from '../../domain/forge-comments';
import { TaskSpec } from '../../domain/task';
import { MEMO_REQUEST_HASH } from '../../workflows/search-attributes';
import { rawBody, rawBodyOf } from '../body';
import type { AppDeps } from '../deps';
import { ConflictError, HttpError, unknownRoute } from '../errors';
import { steerFromComment } from '../github/comment-events';
import { forwardChecksFailed } from '../github/check-events';
import { forwardPullRequestEvent } from '../github/pull-request-events';
import { githubIntake, githubRepoUrl, type GithubIntakeSettings } from '../github/webhook';
import { checkIntake } from '../intake';
import { deliveryTaskId, labelledIssueTaskId, requestHash } from '../idempotency';
import { startTask } from '../start-task';
import { taskRow } from '../visibility';
import { taskLinks } from './tasks';

/** Where GitHub delivers. */
export const GITHUB_WEBHOOK_PATH = '/v1/webhooks/github';

/** Largest delivery read: issue events are a few KiB, and nothing is read before the signature is checked. */
export const MAX_DELIVERY_BYTES = 1024 * 1024;

/** Labels a task keeps of its issue, and the longest one (the task schema's limits). */
const MAX_LABELS = 50;
const MAX_LABEL_CHARS = 100;

/** Thrown when a labelled issue cannot become a task under the operator's intake rules (422, with the rule's reason). */
export class IntakeRefusedError extends HttpError {
  override readonly name = 'IntakeRefusedError';
  constructor(message: string, options: { cause?: unknown; details?: { path: string; message: string }[] } = {}) {
    super(422, 'intake_refused', message, options);
  }
}

/** What a task started from an issue is made of: the issue's repository and labels, its goal, who asked. */
interface IssueAsk {
  repo: string;
  default_branch: string;
  goal: string;
  labels: string[];
  login: string;
}

/** The task spec an issue asks for, or an {@link IntakeRefusedError} naming what the task schema refuses. */
function issueSpec(ask: IssueAsk, settings: GithubIntakeSettings, team: string): TaskSpec & { team: string } {
  const preset = budgetPresetOf(ask.labels);
  const parsed = TaskSpec.safeParse({
    repo: githubRepoUrl(settings.gitBase, ask.repo),
    base_branch: ask.default_branch,
    goal: ask.goal,
    planner: settings.planner,
    labels: ask.labels.filter((l) => l.length > 0 && l.length <= MAX_LABEL_CHARS).slice(0, MAX_LABELS),
    ...(preset === null ? {} : { budget: BUDGET_PRESETS[preset] }),
    requester: `github:${ask.login}`,
    team,
  });
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    throw new IntakeRefusedError(`the issue cannot be a task: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { cause: parsed.error, details: issues });
  }
  return { ...parsed.data, team };
}

/** Routes of GitHub intake; without settings (no webhook secret) the path answers 404 like any absent route. */
export function githubWebhookRoutes(deps: AppDeps): Router {
  const router = Router();
  const settings = deps.github;
  if (settings === undefined) {
    router.post(GITHUB_WEBHOOK_PATH, unknownRoute());
    return router;
  }
  const intake = githubIntake(settings);
  const { log } = deps;

  /** Answers a delivery intake has nothing to do with: 200, so GitHub does not retry it, and a log line saying why. */
  const ignore = (res: Response, deliveryId: string, reason: string): void => {
    log.info('github delivery ignored', { delivery_id: deliveryId, reason });
    res.status(200).json({ ignored: reason });
  };

  router.post(GITHUB_WEBHOOK_PATH, rawBody(MAX_DELIVERY_BYTES), async function receiveGithubDelivery(req, res) {
    const event = intake.receive({ headers: req.headers, body: rawBodyOf(req) });
    if (event.kind === 'ping') {
      log.info('github webhook ping', { delivery_id: event.delivery_id });
      res.status(200).json({ ok: true });
      return;
    }
    if (event.kind === 'ignored') return ignore(res, event.delivery_id, event.reason);
    // Bots do not steer the agent (their comments could loop); a merge by one (a merge queue) still ends the task, and
    // failing checks (whoever re-ran them) are read back from GitHub, bounded by the task's CI rounds.
    if (event.kind !== 'pr_closed' && event.kind !== 'checks_failed' && event.sender.bot && !settings.botAllow.includes(event.sender.login)) {
      return ignore(res, event.delivery_id, `sender ${event.sender.login} is a bot not in GITHUB_BOT_ALLOW`);
    }
    const mapped = deps.access === undefined ? undefined : githubRepoSettings(deps.access, event.repo);
    if (mapped === undefined) return ignore(res, event.delivery_id, `repository ${event.repo} is not mapped to a team in TEAMS_FILE`);
    if (event.kind === 'issue_commented') return takeComment(res, event, mapped.team);
    if (event.kind !== 'issue_ready') {
      const forwarded = event.kind === 'checks_failed' ? await forwardChecksFailed(deps.client, event) : await forwardPullRequestEvent(deps.client, event);
      if (!forwarded.taken) return ignore(res, event.delivery_id, forwarded.reason);
      log.info('github pull request event taken', { delivery_id: event.delivery_id, task_id: forwarded.task_id, kind: event.kind, ...('number' in event ? { number: event.number } : { head_sha: event.head_sha }) });
      res.status(202).json({ task_id: forwarded.task_id, taken: event.kind });
      return;
    }

    await startIssueTask(res, {
      ask: { repo: event.repo, default_branch: event.default_branch, goal: issueGoal(event.title, event.body), labels: event.labels, login: event.sender.login },
      team: mapped.team,
      issue: event.number,
      deliveryId: event.delivery_id,
      // The body is what GitHub signs: the same labelling re-sent under another delivery id is the same task.
      taskId: labelledIssueTaskId(event.body_sha256),
    });
  });

  /** Starts the task an issue asks for (once: a repeated delivery answers with the task it started). */
  async function startIssueTask(res: Response, a: { ask: IssueAsk; team: string; issue: number; deliveryId: string; taskId: string }): Promise<void> {
    const spec = issueSpec(a.ask, settings!, a.team);
    try {
      await checkIntake(deps, spec);
    } catch (err) {
      throw err instanceof HttpError ? new IntakeRefusedError(err.message, { cause: err, ...(err.details ? { details: err.details } : {}) }) : err;
    }
    const identity = githubIdentity(a.ask.login, a.team, a.deliveryId);
    const links = taskLinks(a.taskId);
    const hash = requestHash(spec);
    const outcome = await startTask(deps, {
      taskId: a.taskId,
      spec,
      requestedBy: principalOf(identity, a.team),
      // The merge setting and CI rounds as they are now: a restart with other values does not change a task under way.
      source: {
        forge: 'github',
        repo: a.ask.repo,
        issue: a.issue,
        delivery_id: a.deliveryId,
        max_ci_rounds: settings!.maxCiRounds,
        ...(settings!.mergeMethod ? { merge_method: settings!.mergeMethod } : {}),
      },
      requestHash: hash,
    });
    if (!outcome.started) {
      // The same signed event asks for another task only when the operator's intake settings changed since.
      if (outcome.existing.memo?.[MEMO_REQUEST_HASH] !== hash) throw new ConflictError('delivery_reused', `this event (delivery ${a.deliveryId}) already started task ${a.taskId}, with other settings`);
      log.info('github delivery repeated', { delivery_id: a.deliveryId, task_id: a.taskId });
      res.status(200).location(links.self).json({ task_id: a.taskId, state: taskRow(outcome.existing).state, links, duplicate: true });
      return;
    }
    log.info('github issue started a task', { delivery_id: a.deliveryId, task_id: a.taskId, repo: a.ask.repo, issue: a.issue, requester: spec.requester });
    res.status(202).location(links.self).json({ task_id: a.taskId, state: 'queued', links });
  }

  /** A comment speaking to the agent, from someone GitHub says has write access: a task on an issue, a round or a message on the agent's pull request. */
  async function takeComment(res: Response, event: IssueCommented, team: string): Promise<void> {
    const lookup = deps.forgeLookup;
    if (lookup === undefined) return ignore(res, event.delivery_id, 'no GitHub access (GITHUB_TOKEN_FILE or GITHUB_APP_ID) to check who commented');
    const permission = await atGithub('read the permission of the commenter on', event.repo, () => lookup.permission(event.repo, event.sender.login));
    if (!STEERING_PERMISSIONS.has(permission)) {
      await atGithub('reply on', event.repo, () => lookup.comment(event.repo, event.number, notAllowedCommentReply(event.sender.login)));
      return ignore(res, event.delivery_id, `${event.sender.login} has ${permission} permission on ${event.repo}, not write`);
    }
    if (event.on_pull_request) {
      const by = principalOf(githubIdentity(event.sender.login, team, event.delivery_id), team);
      const steered = await atGithub('read the pull request of', event.repo, () => steerFromComment(deps.client, lookup, event, by), true);
      if (steered.taken === false) return ignore(res, event.delivery_id, steered.reason);
      log.info('github comment steered a task', { delivery_id: event.delivery_id, task_id: steered.task_id, as: steered.taken, number: event.number });
      res.status(202).json({ task_id: steered.task_id, taken: steered.taken });
      return;
    }
    await startIssueTask(res, {
      ask: { repo: event.repo, default_branch: event.default_branch, goal: commentGoal(issueGoal(event.title, event.body), event.request, event.sender.login), labels: event.labels, login: event.sender.login },
      team,
      issue: event.number,
      deliveryId: event.delivery_id,
      // The comment's id is in the signed body: the same comment re-sent under another delivery id starts nothing new.
      taskId: deliveryTaskId('github', `comment-${event.comment_id}`),
    });
  }

  return router;
}

/** Who a GitHub delivery acts as: the login, a submitter of the repository's team, through this delivery. */
function githubIdentity(login: string, team: string, deliveryId: string): Identity {
  return { subject: `github:${login}`, name: login, role: 'submitter', teams: [team], via: { kind: 'github_webhook', id: deliveryId } };
}

/** Thrown when GitHub could not be asked what a delivery needs (502): the delivery can be redelivered from GitHub's settings. */
export class ForgeUnavailableError extends HttpError {
  override readonly name = 'ForgeUnavailableError';
  constructor(message: string, cause: unknown) {
    super(502, 'forge_unavailable', message, { cause });
  }
}

/** `fn`'s answer, or a {@link ForgeUnavailableError} naming what could not be done at GitHub (with `passOthers`, errors that carry no HTTP status (ours) pass unchanged). */
async function atGithub<T>(what: string, repo: string, fn: () => Promise<T>, passOthers = false): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const status = (err as { status?: unknown } | null)?.status;
    if (passOthers && typeof status !== 'number') throw err;
    throw new ForgeUnavailableError(`GitHub: could not ${what} ${repo}${typeof status === 'number' ? ` (HTTP ${status})` : ''}`, err);
  }
}
