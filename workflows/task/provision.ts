/**
 * Provisioning: the sandbox around a fresh working copy, and the repo's policy merged into the task's.
 */
import { commandMatchingPatternOnly, commandNeedingApproval, mergeBudget, mergePolicy } from '../../domain/rules';
import { baseline } from './gates';
import { io } from './proxies';
import { patched } from '@temporalio/workflow';
import type { ProvisionResult } from '../../activities/types';
import { ADMISSION_PATCH, provisionAdmitted, provisionInput, warnIfUnisolated } from './sandbox';
import { addMinutes, type TaskRun } from './state';
import { setState, trace } from './visibility';

/** Patch before which a task waiting on its plan's approval was given its sandbox first. */
export const DEFER_SANDBOX_PATCH = 'sandbox-deferred-to-plan-approval';

/** Patch before which a recipe task whose first command waits for approval was given its sandbox first. */
export const DEFER_TO_FIRST_COMMAND_PATCH = 'sandbox-deferred-to-first-command-approval';

/** What a task whose sandbox is deferred waits on first. */
type WaitsOn = 'plan_approval' | 'risky_action';

/**
 * What the task waits on from a human before anything runs, if anything: then provisioning reads the repository but
 * makes no sandbox. A recipe whose own policy asks for its plan's approval, or whose first command its own policy
 * has approved by a person (either reading of the command: a wrong guess costs one more clone, never a skipped
 * gate). What only the repository's policy asks for is known once it is read; that task parks its sandbox after
 * the release delay. Setup the task names runs first, so it gets its sandbox at once.
 */
function waitsBeforeRunning(t: TaskRun): WaitsOn | null {
  const s = t.s;
  const spec = t.input.spec;
  if (spec.planner.kind !== 'recipe' || s.planned) return null;
  if (s.policy.require_plan_approval) return patched(ADMISSION_PATCH) && patched(DEFER_SANDBOX_PATCH) ? 'plan_approval' : null;
  const first = spec.planner.steps[0];
  if (first === undefined || spec.setup !== undefined) return null;
  const gated = commandNeedingApproval(s.policy, first.run) !== null || commandMatchingPatternOnly(s.policy, first.run) !== null;
  return gated && patched(ADMISSION_PATCH) && patched(DEFER_TO_FIRST_COMMAND_PATCH) ? 'risky_action' : null;
}

const WAITING_FOR: Record<WaitsOn, string> = { plan_approval: 'the plan is approved', risky_action: 'its first command is approved' };

/** Provisions the task's sandbox; the repo's policy and budget can only tighten the task's. */
export async function provision(t: TaskRun): Promise<void> {
  const s = t.s;
  const input = provisionInput(t);
  let p: ProvisionResult;
  const waitsOn = waitsBeforeRunning(t);
  if (waitsOn !== null) {
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
    // A repository's own setup (`.agent/setup.sh`) runs before the first command, so that task's sandbox comes back first.
    const until = waitsOn === 'risky_action' && p.setup ? 'the repository\'s setup runs' : WAITING_FOR[waitsOn ?? 'plan_approval'];
    trace(t, 'provisioned', `repository read at ${p.base_commit}; no sandbox until ${until}`, {
      base_commit: p.base_commit,
      repo_policy: p.repo_policy !== null,
      deferred: true,
      ...(waitsOn ? { waits_on: waitsOn } : {}),
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
