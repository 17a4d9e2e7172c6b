/**
 * The source issue mirrors the task: one `agent:*` label for where it stands and one status comment, edited in
 * place. A background loop writes whenever what the issue should show changes; the final mirror is written as
 * the task ends. Showing the task never holds it up: a write that fails is traced once and the task goes on.
 */
import { ActivityFailure, condition, patched } from '@temporalio/workflow';
import { mirrorKey, mirrorOf, type IssueMirror, type MirrorLabel } from '../../domain/forge-mirror';
import { describeFailure, mirrorActs } from './proxies';
import type { TaskRun } from './state';
import { trace } from './visibility';

/** Marks the workflows that mirror their task onto its source issue: one an older worker started never grows the writes on replay. */
export const MIRROR_PATCH = 'forge-issue-mirror';

/**
 * How long the mirror waits after a change before writing it (ms): GitHub asks integrations to space their writes
 * (about one a second), and the forge client queues them, so each write spared is a pull request update not delayed.
 */
const MIRROR_SETTLE_MS = 5_000;
/** Labels written without waiting: they ask a human for something. */
const SHOWN_AT_ONCE: ReadonlySet<MirrorLabel | null> = new Set<MirrorLabel | null>(['agent:needs-input', 'agent:pr-open']);

/** Whether this run mirrors: the task came from a GitHub issue and this run's history is one with mirror writes. Decided once, when the run starts. */
function mirrorOn(t: TaskRun): boolean {
  t.mirrorActive ??= t.input.source?.forge === 'github' && patched(MIRROR_PATCH);
  return t.mirrorActive;
}

/** What the source issue should show of the task now. */
export function desiredMirror(t: TaskRun): IssueMirror {
  const s = t.s;
  return mirrorOf({
    state: s.state,
    round: s.round,
    pending: s.items.filter((i) => i.status === 'pending').map((i) => ({ kind: i.kind, title: i.title })),
    ...(s.pr === undefined ? {} : { pr: { number: s.pr.number, url: s.pr.url, open: !s.pr.closed } }),
    result: s.result,
  });
}

/** Keeps the source issue mirroring the task until the run ends; starts nothing for a task not from a GitHub issue. */
export async function issueMirror(t: TaskRun): Promise<void> {
  if (!mirrorOn(t)) return;
  const changed = () => mirrorKey(desiredMirror(t)) !== t.s.mirror?.key;
  for (;;) {
    await condition(() => t.finished || changed());
    // A burst of changes (provisioning, then running; a review answered and the next round under way) is one write of
    // where it ended up; a human being needed is shown at once.
    const asksHuman = () => SHOWN_AT_ONCE.has(desiredMirror(t).label);
    if (!t.finished && !asksHuman()) await condition(() => t.finished || asksHuman(), MIRROR_SETTLE_MS);
    // The end's mirror is written by flushMirror; a run continuing as new leaves the rest to the next run.
    if (t.finished) return;
    if (changed()) await writeTracked(t);
  }
}

/** Waits for the mirror write in flight, if any (before the run ends or continues as new). */
export async function mirrorSettled(t: TaskRun): Promise<void> {
  // A write cancelled with the workflow rejects; the loop that started it has ended, and the final write follows.
  while (t.mirroring !== null) await t.mirroring.catch(() => undefined);
}

/** Writes the final mirror of an ended task (done, or how it ended) once any write in flight is over. */
export async function flushMirror(t: TaskRun): Promise<void> {
  if (!mirrorOn(t)) return;
  await mirrorSettled(t);
  if (mirrorKey(desiredMirror(t)) !== t.s.mirror?.key) await writeTracked(t);
}

/** One write, kept on the run so an end or a continue-as-new can wait for it. */
async function writeTracked(t: TaskRun): Promise<void> {
  const write = writeMirror(t);
  t.mirroring = write;
  try {
    await write;
  } finally {
    t.mirroring = null;
  }
}

/** Sets the issue's label and status comment to the mirror of the task now; a failure is traced (once until a write succeeds again), never thrown. */
async function writeMirror(t: TaskRun): Promise<void> {
  const source = t.input.source!;
  const mirror = desiredMirror(t);
  const key = mirrorKey(mirror);
  const prev = t.s.mirror;
  try {
    const { comment_id } = await mirrorActs.mirrorIssue({
      repo: source.repo,
      issue: source.issue,
      task_id: t.input.task_id,
      mirror,
      ...(prev?.comment_id === undefined ? {} : { comment_id: prev.comment_id }),
    });
    t.s.mirror = { key, comment_id };
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    // Not tried again until the mirror changes: a forge that refuses keeps refusing, and the task must not spin on it.
    t.s.mirror = { key, ...(prev?.comment_id === undefined ? {} : { comment_id: prev.comment_id }), failed: true };
    if (prev?.failed !== true) trace(t, 'health', `could not update ${source.repo}#${source.issue} to show the task ${mirror.label ?? mirror.state}: ${describeFailure(err)}; the task goes on`);
  }
}
