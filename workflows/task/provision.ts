/**
 * Provisioning: the sandbox around a fresh working copy, and the repo's policy merged into the task's.
 */
import { mergeBudget, mergePolicy } from '../../domain/rules';
import { baseline } from './gates';
import { io } from './proxies';
import { patched } from '@temporalio/workflow';
import { ADMISSION_PATCH, provisionAdmitted, provisionInput } from './sandbox';
import { addMinutes, type TaskRun } from './state';
import { setState, trace } from './visibility';

/** Provisions the task's sandbox; the repo's policy and budget can only tighten the task's. */
export async function provision(t: TaskRun): Promise<void> {
  const s = t.s;
  const input = provisionInput(t);
  const p = patched(ADMISSION_PATCH)
    ? await provisionAdmitted(t, input, () => setState(t, 'provisioning'))
    : (setState(t, 'provisioning'), await io.provisionSandbox(input));
  s.provision = p;
  baseline(t, p.checkpoint);
  s.policy = mergePolicy(s.policy, p.repo_policy);
  const budget = mergeBudget(s.budget, p.repo_policy);
  if (budget.max_wall_clock_minutes !== s.budget.max_wall_clock_minutes) {
    s.deadline_at = addMinutes(t.input.created_at, budget.max_wall_clock_minutes);
  }
  s.budget = budget;
  s.idle_since = new Date().toISOString();
  trace(t, 'provisioned', `sandbox ${p.sandbox.id} ready (driver ${p.sandbox.driver}, isolation: ${p.sandbox.isolation}${p.worker ? `, worker ${p.worker.id}` : ''})`, {
    base_commit: p.base_commit,
    repo_policy: p.repo_policy !== null,
    isolation: p.sandbox.isolation,
    ...(p.worker ? { worker: p.worker.id } : {}),
  });
  if (p.sandbox.isolation === 'none') {
    trace(t, 'health', 'isolation: none — commands run as plain processes on the worker host');
  }
}
