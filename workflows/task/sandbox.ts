/**
 * Where a task's sandbox lives, and what happens when it is not there. Sandbox work goes to the queue of the
 * worker holding the sandbox; when that worker stops answering, the task re-provisions on another from its
 * last checkpoint; a task parked on a human gives its sandbox back and takes one again when it goes on.
 *
 * Tasks provisioned by a worker without a queue of its own (and every history recorded before workers had one)
 * keep all work on the shared queue: nothing here schedules anything different for them.
 */
import { ActivityFailure, condition, isCancellation, proxyActivities, TimeoutFailure, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import { admissionQueue } from '../../domain/queues';
import type { Activities, ProvisionResult, ProvisionRestore, WorkerPlacement } from '../../activities/types';
import type { SandboxHandle } from '../../activities/sandbox/driver';
import { describeFailure, IO_OPTIONS, io, stepOptions, TOOL_OPTIONS } from './proxies';
import type { TaskRun } from './state';
import { setState, trace } from './visibility';

/** Which kind of sandbox work a call is, for its timeouts: git and file work, a tool call, or a recipe step of that many seconds. */
export type SandboxWork = 'io' | 'tool' | { step_timeout_seconds: number };

/** Workers lost in a row during one call before the task gives up on it (each loss re-provisions once). */
const MAX_LOST_WORKERS_PER_CALL = 3;

/** What the task asks of provisioning, the first time and every time after. */
export function provisionInput(t: TaskRun, restore?: ProvisionRestore): Parameters<Activities['provisionSandbox']>[0] {
  const s = t.s;
  const spec = t.input.spec;
  return {
    task_id: t.input.task_id,
    repo: spec.repo,
    base_branch: spec.base_branch,
    egress_allowlist: s.policy.egress_allowlist,
    deadline_at: s.deadline_at,
    ...(spec.setup ? { setup: { commands: spec.setup.commands, ...(spec.setup.egress_allowlist ? { egress_allowlist: spec.setup.egress_allowlist } : {}) } } : {}),
    ...(restore ? { restore } : {}),
  };
}

/** Admission before provisioning: tasks started before it provision wherever the shared queue sends them. */
export const ADMISSION_PATCH = 'sandbox-admission';

/**
 * Provisions on a worker with room: the task waits (in `queued`, in priority order) on the admission queue until a
 * worker admits it, then provisions on that worker's queue. A worker gone in between is replaced by admitting again.
 */
export async function provisionAdmitted(t: TaskRun, input: Parameters<Activities['provisionSandbox']>[0], onAdmitted: () => void = () => undefined): Promise<ProvisionResult> {
  for (let lost = 0; ; lost++) {
    const admit = proxyActivities<Activities>({ ...IO_OPTIONS, taskQueue: admissionQueue(workflowInfo().taskQueue), priority: { priorityKey: t.input.spec.priority } });
    const w = await admit.admitSandbox({ task_id: t.input.task_id });
    t.s.admitted = w;
    onAdmitted();
    try {
      return await actsFor(w, 'io').provisionSandbox(input);
    } catch (err) {
      if (!workerGone(err) || lost >= MAX_LOST_WORKERS_PER_CALL) throw err;
      trace(t, 'health', `worker ${w.id} admitted the task but stopped answering before it provisioned; asking again`, { worker: w.id });
    }
  }
}

/**
 * Runs `call` against the task's sandbox with the activities of its worker: a released sandbox is brought
 * back first, and a worker that no longer takes the work is replaced by re-provisioning from the checkpoint.
 */
export async function onSandbox<R>(t: TaskRun, work: SandboxWork, call: (acts: Activities, sandbox: SandboxHandle) => Promise<R>): Promise<R> {
  for (let lost = 0; ; lost++) {
    if (t.s.sandbox_released) await reprovision(t, 'released');
    try {
      return await call(actsFor(t.s.provision!.worker, work), t.s.provision!.sandbox);
    } catch (err) {
      if (!workerGone(err) || lost >= MAX_LOST_WORKERS_PER_CALL) throw err;
      await reprovision(t, 'worker_lost');
    }
  }
}

/**
 * Waits until `done`. A task with a live sandbox on a worker that releases parked sandboxes gives it back
 * once the wait outlasts the worker's delay; the next sandbox work re-provisions it.
 */
export async function parkedWait(t: TaskRun, done: () => boolean): Promise<void> {
  const w = t.s.provision?.worker;
  // Setup half run keeps its sandbox: what the run commands installed lives only there, and a cache must not be made without it.
  const setupRunning = t.s.provision?.setup != null && !t.s.setup?.finished;
  if (w === undefined || w.release_after_minutes <= 0 || t.s.sandbox_released || setupRunning) return condition(done);
  if (await condition(done, w.release_after_minutes * 60_000)) return;
  await release(t, w);
  await condition(done);
}

/** Tears the task's sandbox down on its worker at the end; a worker that is gone took its sandbox with it (its reaper removes what is left), and a released one is gone already. */
export async function teardown(t: TaskRun): Promise<'torn_down' | 'gone' | 'released'> {
  const p = t.s.provision;
  // Released: the sandbox and the working copy were removed then.
  if (t.s.sandbox_released) return 'released';
  try {
    // A task whose provisioning failed after admission still frees its place on the admitting worker.
    await actsFor(p?.worker ?? t.s.admitted, 'io').teardownSandbox({ task_id: t.input.task_id, sandbox: p?.sandbox ?? null });
    return 'torn_down';
  } catch (err) {
    if (workerGone(err)) return 'gone';
    throw err;
  }
}

async function release(t: TaskRun, w: WorkerPlacement): Promise<void> {
  const s = t.s;
  const checkpoint = s.checkpoint ?? s.provision!.checkpoint;
  try {
    await actsFor(w, 'io').releaseSandbox({ task_id: t.input.task_id, sandbox: s.provision!.sandbox, checkpoint });
  } catch (err) {
    if (isCancellation(err)) throw err;
    if (!workerGone(err)) {
      trace(t, 'health', `sandbox not released: ${err instanceof ActivityFailure ? describeFailure(err) : String(err)}`);
      return;
    }
    // The worker is gone and its sandbox with it: the next sandbox work re-provisions either way.
  }
  s.sandbox_released = true;
  trace(t, 'sandbox_released', `sandbox released after ${w.release_after_minutes} min waiting on a human; checkpoint ${checkpoint} kept`, { worker: w.id, checkpoint });
}

/**
 * Provisions the task's sandbox again, from its base commit, pushed branch and last checkpoint, on whichever
 * worker admits it.
 */
async function reprovision(t: TaskRun, reason: 'released' | 'worker_lost'): Promise<void> {
  const s = t.s;
  const prev = s.provision!;
  const checkpoint = s.checkpoint ?? prev.checkpoint;
  const input = provisionInput(t, { base_commit: prev.base_commit, checkpoint, branch: s.pushed ? s.branch : null, commit: s.pushed ? s.commit : null });
  // Through admission, as the first time (a deferred sandbox's first time is now): a returning task waits for room like any other.
  const deferred = prev.deferred === true;
  const state = s.state;
  let p: ProvisionResult;
  if (deferred) {
    // The task's first sandbox: it waits in `queued` for room like a new task.
    setState(t, 'queued');
    p = await provisionAdmitted(t, input, () => setState(t, 'provisioning'));
  } else {
    p = s.admitted === undefined ? await io.provisionSandbox(input) : await provisionAdmitted(t, input);
  }
  // Policy, budget and setup were settled by the first provisioning; only where the sandbox is changes (and, for a
  // deferred sandbox, the setup this worker's cache offers now).
  s.provision = { ...prev, sandbox: p.sandbox, ...(p.worker ? { worker: p.worker } : {}), ...(deferred && p.setup !== undefined ? { setup: p.setup } : {}) };
  if (p.worker === undefined) delete s.provision.worker;
  if (deferred) {
    delete s.provision.deferred;
    setState(t, state);
    warnIfUnisolated(t, p.sandbox);
  }
  s.sandbox_released = false;
  // The working copy was brought to the checkpoint, but the next call checks rather than trusts it.
  if (s.agent) s.agent.tree_unsure = true;
  const moved = prev.worker?.id !== p.worker?.id;
  const why = deferred ? 'deferred' : reason;
  const what = { deferred: 'sandbox provisioned now that a human let the task go on', released: 'released sandbox provisioned again', worker_lost: `worker ${prev.worker?.id ?? '(unknown)'} stopped answering; sandbox re-provisioned` }[why];
  trace(
    t,
    'reprovisioned',
    `${what}${moved ? ` on worker ${p.worker?.id ?? '(shared queue)'}` : ''} from checkpoint ${checkpoint}`,
    { reason: why, from_worker: prev.worker?.id ?? null, to_worker: p.worker?.id ?? null, checkpoint, sandbox: p.sandbox.id },
  );
  if (prev.setup && s.setup?.finished && p.setup?.cache?.hit !== true) {
    trace(t, 'health', "what the setup phase installed (ignored paths) went with the old sandbox and is not in this worker's setup cache: commands may miss it");
  }
}

/** Says in the trace when the task's commands run with no isolation (the `process` driver). */
export function warnIfUnisolated(t: TaskRun, sandbox: SandboxHandle): void {
  if (sandbox.isolation === 'none') trace(t, 'health', 'isolation: none — commands run as plain processes on the worker host');
}

/** The activities for `work` on `w`'s own queue, or on the shared queue for a sandbox without one. */
function actsFor(w: WorkerPlacement | undefined, work: SandboxWork): Activities {
  const base: ActivityOptions = work === 'io' ? IO_OPTIONS : work === 'tool' ? TOOL_OPTIONS : stepOptions(work.step_timeout_seconds);
  if (w === undefined) return proxyActivities<Activities>(base);
  return proxyActivities<Activities>({ ...base, taskQueue: w.queue, scheduleToStartTimeout: `${w.lost_after_seconds} seconds` });
}

/** Whether the work waited on its worker's queue past the worker's limit: nobody polls it, the worker is gone. */
function workerGone(err: unknown): boolean {
  return err instanceof ActivityFailure && err.cause instanceof TimeoutFailure && err.cause.timeoutType === 'SCHEDULE_TO_START';
}
