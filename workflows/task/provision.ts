/**
 * Provisioning: the sandbox around a fresh working copy, and the repo's policy merged into the task's.
 */
import { mergeBudget, mergePolicy } from '../../domain/rules';
import { baseline } from './gates';
import { io } from './proxies';
import { patched } from '@temporalio/workflow';
import type { ProvisionResult } from '../../activities/types';
import { ADMISSION_PATCH, provisionAdmitted, provisionInput, warnIfUnisolated } from './sandbox';
import { addMinutes, type TaskRun } from './state';
import { setState, trace } from './visibility';

/** Patch before which a task waiting on its plan's approval was given its sandbox first. */
export const DEFER_SANDBOX_PATCH = 'sandbox-deferred-to-plan-approval';

/**
 * Whether the task waits on a human before anything runs, so provisioning reads the repository but makes no
 * sandbox: a recipe whose plan the task's own policy has approved by a person. (A plan approval asked for by the
 * repository's policy is known only once it is read; that task parks its sandbox after the release delay.)
 */
function waitsBeforeRunning(t: TaskRun): boolean {
  const s = t.s;
  return t.input.spec.planner.kind === 'recipe' && !s.planned && s.policy.require_plan_approval && patched(ADMISSION_PATCH) && patched(DEFER_SANDBOX_PATCH);
}

/** Provisions the task's sandbox; the repo's policy and budget can only tighten the task's. */
export async function provision(t: TaskRun): Promise<void> {
  const s = t.s;
  const input = provisionInput(t);
  let p: ProvisionResult;
  if (waitsBeforeRunning(t)) {
    // A deferred sandbox holds no place on a worker: any worker clones, reads and checkpoints, and admission comes with the sandbox.
    setState(t, 'provisioning');
    p = await io.provisionSandbox({ ...input, defer_sandbox: true });
  } else if (patched(ADMISSION_PATCH)) {
    p = await provisionAdmitted(t, input, () => setState(t, 'provisioning'));
  } else {
    setState(t, 'provisioning');
    p = await io.provisionSandbox(input);
  }
  s.provision = p;
  baseline(t, p.checkpoint);
  s.policy = mergePolicy(s.policy, p.repo_policy);
  const budget = mergeBudget(s.budget, p.repo_policy);
  if (budget.max_wall_clock_minutes !== s.budget.max_wall_clock_minutes) {
    s.deadline_at = addMinutes(t.input.created_at, budget.max_wall_clock_minutes);
  }
  s.budget = budget;
  s.idle_since = new Date().toISOString();
  if (p.deferred) {
    // Released before it ever was: the first sandbox work provisions it from the checkpoint just kept.
    s.sandbox_released = true;
    trace(t, 'provisioned', `repository read at ${p.base_commit}; no sandbox until the plan is approved`, {
      base_commit: p.base_commit,
      repo_policy: p.repo_policy !== null,
      deferred: true,
      ...(p.worker ? { worker: p.worker.id } : {}),
    });
    return;
  }
  trace(t, 'provisioned', `sandbox ${p.sandbox.id} ready (driver ${p.sandbox.driver}, isolation: ${p.sandbox.isolation}${p.worker ? `, worker ${p.worker.id}` : ''})`, {
    base_commit: p.base_commit,
    repo_policy: p.repo_policy !== null,
    isolation: p.sandbox.isolation,
    ...(p.worker ? { worker: p.worker.id } : {}),
  });
  warnIfUnisolated(t, p.sandbox);
}
