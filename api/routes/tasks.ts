/**
 * Task intake and reads: `POST /v1/tasks`, `GET /v1/tasks`, `GET /v1/tasks/:id`, its trace and artifacts.
 */
import type { Response, Router } from 'express';
import { githubRepoSettings, principalOf, visibleTeams } from '../../domain/access';
import { githubRepoOf } from '../../domain/github-repos';
import { TaskSpec, type TraceEntry } from '../../domain/task';
import { SUBMIT_ROLE } from '../../domain/roles';
import { traceQuery } from '../../workflows/messages';
import { MEMO_REQUEST_HASH, SA_LABELS, SA_PRIORITY, SA_REPO, SA_REQUESTER, SA_STATE, SA_TEAM } from '../../workflows/search-attributes';
import { ForbiddenError, identityOf } from '../auth/context';
import { intakeTeam, requireRole, taskAccess } from '../auth/guard';
import { archivedTrace, readArtifact } from '../artifacts';
import { jsonBody } from '../body';
import type { AppDeps } from '../deps';
import { ConflictError } from '../errors';
import { intakePolicy } from '../intake';
import { idempotentTaskId, newTaskId, requestHash } from '../idempotency';
import { withQueuePositions } from '../queue-position';
import { decodePageToken, encodePageToken, endedRow, fromRecord, matchesListing, readTaskView, type EndedTaskRow } from '../ended-tasks';
import { CreateTaskHeaders, TaskListQuery } from '../schemas';
import { valid, validate } from '../validate';
import { listExecutions, summaryOf, taskRow, teamClause, visibilityQuery, where, type TaskRow } from '../visibility';
import { startTask } from '../start-task';
import { pathParam, taskRouter } from './params';

/** Where a task and its trace live in this API. */
export function taskLinks(taskId: string): { self: string; trace: string } {
  return { self: `/v1/tasks/${taskId}`, trace: `/v1/tasks/${taskId}/trace` };
}

/**
 * The visibility clauses of a listing's filters, limited to the teams the caller sees (null: they see none);
 * a continued-as-new run is the same task as its successor, so each task lists once.
 */
function listClauses(q: TaskListQuery, res: Response): string[] | null {
  const teams = teamClause(visibleTeams(identityOf(res)));
  if (teams === null) return null;
  const clauses = [where('ExecutionStatus', '!=', 'ContinuedAsNew')];
  if (teams !== undefined) clauses.push(teams);
  if (q.team !== undefined) clauses.push(where(SA_TEAM, '=', q.team));
  if (q.state !== undefined) clauses.push(where(SA_STATE, '=', q.state));
  if (q.repo !== undefined) clauses.push(where(SA_REPO, '=', q.repo));
  if (q.requester !== undefined) clauses.push(where(SA_REQUESTER, '=', q.requester));
  if (q.label !== undefined) clauses.push(where(SA_LABELS, '=', q.label));
  if (q.priority !== undefined) clauses.push(where(SA_PRIORITY, '=', q.priority));
  return clauses;
}

/**
 * A listing with ended tasks: the first page starts with the running tasks (from Temporal), then ended tasks
 * from their records, newest end first; later pages (`page_token`) go on through the records only.
 */
async function listWithEnded(deps: AppDeps, q: TaskListQuery, res: Response): Promise<{ tasks: (TaskRow | EndedTaskRow)[]; next_page_token: string | null }> {
  const after = q.page_token === undefined ? undefined : decodePageToken(q.page_token);
  const clauses = listClauses(q, res);
  if (clauses === null) return { tasks: [], next_page_token: null };
  const running: TaskRow[] =
    after === undefined
      ? (await listExecutions(deps.client, visibilityQuery([...clauses, where('ExecutionStatus', '=', 'Running')]), q.limit)).map(taskRow)
      : [];
  const room = q.limit - running.length;
  if (deps.records === undefined) return { tasks: running, next_page_token: null };
  if (room === 0) return { tasks: running, next_page_token: encodePageToken(null) };
  // A task that wrote its record a moment ago may still be running; list it once.
  const listed = new Set(running.map((r) => r.task_id));
  const page = await deps.records.page({ ...(after ? { after } : {}), limit: room, match: matchesListing(q, visibleTeams(identityOf(res))) });
  const ended = page.records.filter((r) => !listed.has(r.task_id)).map(endedRow);
  return { tasks: [...running, ...ended], next_page_token: page.next === null ? null : encodePageToken(page.next) };
}

/**
 * Refuses a task on a GitHub repository TEAMS_FILE maps to another team: the worker pushes there with GitHub's
 * token, which reaches every repository of the installation, so the mapping is what keeps teams apart.
 */
function checkRepoTeam(deps: AppDeps, repo: string, team: string): void {
  if (deps.githubGitBase === undefined || deps.access === undefined) return;
  const github = githubRepoOf(deps.githubGitBase, repo);
  const mapped = github === null ? undefined : githubRepoSettings(deps.access, github);
  if (mapped !== undefined && mapped.team !== team) {
    throw new ForbiddenError(`repository ${github} belongs to team ${mapped.team}; a task on it must be that team's (this one is ${team}'s)`);
  }
}

/** Routes that start tasks and read them. */
export function taskRoutes(deps: AppDeps): Router {
  const { client, log } = deps;
  const router = taskRouter();
  const headers = validate('headers', CreateTaskHeaders);
  const spec = validate('body', TaskSpec);
  const listQuery = validate('query', TaskListQuery);
  const intake = intakePolicy(deps, spec);
  const access = taskAccess(deps);

  router.post('/v1/tasks', requireRole(SUBMIT_ROLE), headers, jsonBody(deps.maxBodyBytes), spec, intake, async function createTask(req, res) {
    const identity = identityOf(res);
    // The requester is who called, whatever the body says; the team is one of theirs (any, for an admin).
    const team = intakeTeam(identity, valid(req, spec).team);
    const task = { ...valid(req, spec), requester: identity.subject, team };
    checkRepoTeam(deps, task.repo, team);
    const key = valid(req, headers)['idempotency-key'];
    const hash = key === undefined ? undefined : requestHash(task);
    const taskId = key === undefined ? newTaskId() : idempotentTaskId(task.requester, key);
    const links = taskLinks(taskId);
    const outcome = await startTask(deps, { taskId, spec: task, requestedBy: principalOf(identity, team), ...(hash === undefined ? {} : { requestHash: hash }) });
    if (!outcome.started) {
      const { existing } = outcome;
      if (existing.memo?.[MEMO_REQUEST_HASH] !== hash) {
        throw new ConflictError('idempotency_key_reused', 'this Idempotency-Key was already used for a different request');
      }
      res
        .status(200)
        .location(links.self)
        .json({ task_id: taskId, state: taskRow(existing).state, links, summary: summaryOf(existing) });
      return;
    }
    log.info('task submitted', { task_id: taskId, requester: task.requester, priority: task.priority, idempotent: key !== undefined });
    res.status(202).location(links.self).json({ task_id: taskId, state: 'queued', links });
  });

  router.get('/v1/tasks', listQuery, async function listTasks(req, res) {
    const q = valid(req, listQuery);
    if (q.include_ended) {
      res.json(await listWithEnded(deps, q, res));
      return;
    }
    const clauses = listClauses(q, res);
    const executions = clauses === null ? [] : await listExecutions(client, visibilityQuery(clauses), q.limit);
    res.json({ tasks: await withQueuePositions(client, executions.map(taskRow)) });
  });

  router.get('/v1/tasks/:id', access, async function getTask(req, res) {
    const [view] = await withQueuePositions(client, [await readTaskView(client, deps.records, pathParam(req, 'id'))]);
    res.json(view);
  });

  router.get('/v1/tasks/:id/trace', access, async function getTrace(req, res) {
    const id = pathParam(req, 'id');
    let live: { entries: TraceEntry[]; first_index: number };
    try {
      live = await client.workflow.getHandle(id).query(traceQuery);
    } catch (err) {
      res.json({ entries: await fromRecord(err, deps.records, (r) => r.trace(id)), first_index: 0 });
      return;
    }
    const archived = live.first_index > 0 && deps.artifacts ? await archivedTrace(deps.artifacts, id, live.first_index, log) : null;
    if (archived === null) {
      res.json({ entries: live.entries, first_index: live.first_index });
      return;
    }
    res.json({ entries: [...archived, ...live.entries], first_index: 0 });
  });

  router.get('/v1/tasks/:id/artifacts/:name', access, async function getArtifact(req, res) {
    const content = await readArtifact(deps.artifacts, pathParam(req, 'id'), pathParam(req, 'name'));
    // Artifacts hold command output and diffs: never let a browser sniff them into HTML.
    res.type('text/plain; charset=utf-8').set('X-Content-Type-Options', 'nosniff').send(content);
  });

  return router;
}
