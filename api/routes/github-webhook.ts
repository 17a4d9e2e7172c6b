/**
 * `POST /v1/webhooks/github`: GitHub's deliveries, authenticated by their signature instead of a bearer token, so
 * this router is mounted before `/v1`'s authentication and answers that one path and method only.
 */
import { Router, type Response } from 'express';
import { githubRepoSettings, principalOf, type Identity } from '../../domain/access';
import { BUDGET_PRESETS, budgetPresetOf } from '../../domain/budget-presets';
import { issueGoal, type IssueReady } from '../../domain/forge';
import { TaskSpec } from '../../domain/task';
import { MEMO_REQUEST_HASH } from '../../workflows/search-attributes';
import { rawBody, rawBodyOf } from '../body';
import type { AppDeps } from '../deps';
import { ConflictError, HttpError, unknownRoute } from '../errors';
import { forwardPullRequestEvent } from '../github/pull-request-events';
import { githubIntake, githubRepoUrl, type GithubIntakeSettings } from '../github/webhook';
import { checkIntake } from '../intake';
import { deliveryTaskId, requestHash } from '../idempotency';
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

/** The task spec a ready issue asks for, or an {@link IntakeRefusedError} naming what the task schema refuses. */
function issueSpec(event: IssueReady, settings: GithubIntakeSettings, team: string): TaskSpec & { team: string } {
  const preset = budgetPresetOf(event.labels);
  const parsed = TaskSpec.safeParse({
    repo: githubRepoUrl(settings.gitBase, event.repo),
    base_branch: event.default_branch,
    goal: issueGoal(event.title, event.body),
    planner: settings.planner,
    labels: event.labels.filter((l) => l.length > 0 && l.length <= MAX_LABEL_CHARS).slice(0, MAX_LABELS),
    ...(preset === null ? {} : { budget: BUDGET_PRESETS[preset] }),
    requester: `github:${event.sender.login}`,
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
    // Bots do not steer the agent (their comments could loop); a merge by one (a merge queue) still ends the task.
    if (event.kind !== 'pr_closed' && event.sender.bot && !settings.botAllow.includes(event.sender.login)) {
      return ignore(res, event.delivery_id, `sender ${event.sender.login} is a bot not in GITHUB_BOT_ALLOW`);
    }
    const mapped = deps.access === undefined ? undefined : githubRepoSettings(deps.access, event.repo);
    if (mapped === undefined) return ignore(res, event.delivery_id, `repository ${event.repo} is not mapped to a team in TEAMS_FILE`);
    if (event.kind !== 'issue_ready') {
      const forwarded = await forwardPullRequestEvent(deps.client, event);
      if (!forwarded.taken) return ignore(res, event.delivery_id, forwarded.reason);
      log.info('github pull request event taken', { delivery_id: event.delivery_id, task_id: forwarded.task_id, kind: event.kind, number: event.number });
      res.status(202).json({ task_id: forwarded.task_id, taken: event.kind });
      return;
    }

    const spec = issueSpec(event, settings, mapped.team);
    try {
      await checkIntake(deps, spec);
    } catch (err) {
      throw err instanceof HttpError ? new IntakeRefusedError(err.message, { cause: err, ...(err.details ? { details: err.details } : {}) }) : err;
    }
    const identity: Identity = {
      subject: spec.requester,
      name: event.sender.login,
      role: 'submitter',
      teams: [mapped.team],
      via: { kind: 'github_webhook', id: event.delivery_id },
    };
    const taskId = deliveryTaskId('github', event.delivery_id);
    const links = taskLinks(taskId);
    const hash = requestHash(spec);
    const outcome = await startTask(deps, {
      taskId,
      spec,
      requestedBy: principalOf(identity, mapped.team),
      source: { forge: 'github', repo: event.repo, issue: event.number, delivery_id: event.delivery_id },
      requestHash: hash,
    });
    if (!outcome.started) {
      // Only a holder of the secret can sign a different body under a delivery id already used.
      if (outcome.existing.memo?.[MEMO_REQUEST_HASH] !== hash) throw new ConflictError('delivery_reused', `delivery ${event.delivery_id} already started a different task`);
      log.info('github delivery repeated', { delivery_id: event.delivery_id, task_id: taskId });
      res.status(200).location(links.self).json({ task_id: taskId, state: taskRow(outcome.existing).state, links, duplicate: true });
      return;
    }
    log.info('github issue started a task', { delivery_id: event.delivery_id, task_id: taskId, repo: event.repo, issue: event.number, requester: spec.requester });
    res.status(202).location(links.self).json({ task_id: taskId, state: 'queued', links });
  });
  return router;
}
