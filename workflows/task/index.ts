/**
 * The task workflow: one durable run per task, from sandbox to reviewed branch.
 *
 * Deterministic code only. Guards (wall clock, idle, budget) are Temporal timers and conditions, so
 * they hold across worker crashes, deploys and server restarts. Every change reaches what ships
 * through `gates.ts`.
 */
import { ActivityFailure, allHandlersFinished, condition, continueAsNew, isCancellation } from '@temporalio/workflow';
import type { TaskOutcome, TaskWorkflowInput } from '../messages';
import { wallClockGuard } from './guards';
import { installHandlers } from './handlers';
import { mainLine } from './main-line';
import { issueMirror, mirrorSettled } from './mirror';
import { notificationsStarted } from './notify';
import { finish } from './output';
import { installForgeHandler } from './pull-request';
import { describeFailure } from './proxies';
import { slaGuard } from './sla';
import { TaskRun, type End } from './state';
import { flushTrace, publishVisibility, trace } from './visibility';

/** Runs one task to the end; the workflow id is the task id. */
export async function taskWorkflow(input: TaskWorkflowInput): Promise<TaskOutcome> {
  const t = new TaskRun(input);
  installHandlers(t);
  installForgeHandler(t);
  if (!t.input.carried) {
    trace(t, 'created', `task created by ${t.input.spec.requester}`, {
      repo: t.input.spec.repo,
      base_branch: t.input.spec.base_branch,
      planner: t.input.spec.planner.kind,
      ...(t.input.requested_by === undefined ? {} : { requested_by: t.input.requested_by }),
    });
  }
  // Memo fields upserted by an earlier run do not carry over continue-as-new: publish them again.
  publishVisibility(t);
  // Rejects only when the whole workflow is cancelled from outside; the catch below handles that.
  void wallClockGuard(t).catch(() => undefined);
  void slaGuard(t).catch(() => undefined);
  void issueMirror(t).catch(() => undefined);

  let end: End;
  try {
    const outcome = await t.work.run(() => mainLine(t));
    if (outcome === 'continue') {
      t.finished = true;
      // The mirror loop stops on `finished`; a write it has under way is finished, not left to the next run.
      await mirrorSettled(t);
      await flushTrace(t);
      await notificationsStarted(t);
      await condition(allHandlersFinished);
      return continueAsNew<typeof taskWorkflow>({ ...t.input, carried: t.s });
    }
    end = outcome;
  } catch (err) {
    if (isCancellation(err)) {
      // No endRequest means the workflow itself was cancelled through Temporal, not through the API.
      end = t.endRequest ?? { state: 'cancelled', result: 'cancelled through Temporal' };
    } else if (err instanceof ActivityFailure) {
      end = { state: 'failed', result: describeFailure(err) };
    } else {
      // Anything else is a bug in this code: fail the workflow task so a fixed deploy can resume it.
      throw err;
    }
  }
  return finish(t, end);
}