/**
 * The gates, in one place: every change a command or tool makes reaches `s.checkpoint` (and so what
 * ships) only through {@link acceptCheckpoint}, and every command a policy pattern names asks a human
 * first through {@link gateCommand}. What the model, a recipe or a check command says cannot skip them.
 */
import { patched } from '@temporalio/workflow';
import { commandMatchingPatternOnly, commandNeedingApproval, preview, protectedPathsTouched } from '../../domain/rules';
import { OPAQUE_REASONS } from '../../domain/shell-commands';
import type { Resolution } from '../../domain/task';
import { raise, waitFor } from './inbox';
import { onSandbox } from './sandbox';
import type { TaskRun } from './state';

/** Patch before which self-check commands took their checkpoint without the protected-path gate. */
export const SELF_CHECK_GATE_PATCH = 'self-check-gate';
/** Patch before which self-check commands ran without matching approval patterns. */
export const CHECK_APPROVAL_PATCH = 'check-approval';
/** Patch before which approval patterns were matched against the raw command line, not its shell parse. */
export const PARSED_SHELL_PATCH = 'approval-on-parsed-shell';

/** The pristine working copy a sandbox was provisioned with: the first gated checkpoint. */
export function baseline(t: TaskRun, checkpoint: string): void {
  t.s.checkpoint = checkpoint;
}

/**
 * The one way a checkpoint becomes the task's: the protected paths a change touched since the last
 * gated checkpoint (`from` must be it) go to a human first, with the diff. An accepted change becomes
 * `s.checkpoint`; a rejected one leaves it where it was (the next command starts from there) and never
 * ships. `preapproved` paths were approved from the call's arguments; `ungatedBefore` names the patch
 * before which this path took its checkpoint ungated (recorded histories replay that way).
 */
export async function acceptCheckpoint(
  t: TaskRun,
  change: { from: string; to: string; changed_paths: string[]; preapproved?: string[]; ungatedBefore?: string },
  diffName: string,
  what: string,
  detail: Record<string, unknown>,
): Promise<{ accepted: true } | { accepted: false; touched: string[]; resolution: Resolution }> {
  const s = t.s;
  if (change.from !== s.checkpoint) throw new Error(`a change from ${change.from} offered while the gated checkpoint is ${s.checkpoint}`);
  const touched = protectedPathsTouched(s.policy, change.changed_paths).filter((p) => !(change.preapproved ?? []).includes(p));
  if (touched.length > 0 && (change.ungatedBefore === undefined || patched(change.ungatedBefore))) {
    const resolution = await gateProtectedChange(t, change.from, change.to, touched, diffName, what, detail);
    if (resolution.action !== 'approve') {
      // The working copy still holds the change: the next command restores the checkpoint first.
      if (s.agent) s.agent.tree_unsure = true;
      return { accepted: false, touched, resolution };
    }
  }
  s.checkpoint = change.to;
  return { accepted: true };
}

/** Opens a `risky_action` item showing a change's diff limited to the protected paths it touched, and waits for the decision. */
async function gateProtectedChange(
  t: TaskRun,
  from: string,
  to: string,
  touched: string[],
  diffName: string,
  what: string,
  detail: Record<string, unknown>,
): Promise<Resolution> {
  const d = await onSandbox(t, 'io', (acts, sandbox) => acts.diffCheckpoints({ task_id: t.input.task_id, sandbox, from, to, paths: touched, name: diffName }));
  const item = raise(t, 'risky_action', `${what} changed protected paths: ${touched.slice(0, 3).join(', ')}`, 'awaiting_approval', {
    reason: 'change touches protected paths',
    ...detail,
    paths: touched.slice(0, 100),
    diff_stat: preview(d.stat, 2_000),
    diff_preview: d.preview,
    diff_ref: d.diff.ref,
  });
  return waitFor(t, item);
}

/**
 * Asks a human before `command` runs when it matches an approval pattern: the decision, or null when
 * no pattern matches (or, for `ungatedBefore`, in a history recorded before this command was gated).
 */
export async function gateCommand(t: TaskRun, command: string, title: string, detail: Record<string, unknown>, ungatedBefore?: string): Promise<Resolution | null> {
  const pattern = approvalNeeded(t, command);
  if (pattern === null) return null;
  if (ungatedBefore !== undefined && !patched(ungatedBefore)) return null;
  const opaque = (Object.values(OPAQUE_REASONS) as string[]).includes(pattern);
  const item = raise(t, 'risky_action', `${title}: ${preview(command, 100)}`, 'awaiting_approval', {
    reason: opaque ? 'the command cannot be read statically, so it needs approval' : 'command matches an approval pattern',
    command: preview(command, 4_000),
    matched: pattern,
    ...detail,
  });
  return waitFor(t, item);
}

/**
 * The approval pattern (or opaque reason) `command` needs approval for, from a shell parse; a history
 * recorded before commands were parsed keeps the line matcher it was decided with, where the two differ.
 */
function approvalNeeded(t: TaskRun, command: string): string | null {
  const parsed = commandNeedingApproval(t.s.policy, command);
  const line = commandMatchingPatternOnly(t.s.policy, command);
  if (parsed === line) return parsed;
  return patched(PARSED_SHELL_PATCH) ? parsed : line;
}

/**
 * Asks a human before the agent writes a protected path it names, showing what it would write: the
 * paths approved (empty when none is protected), or the path and decision of a rejection.
 */
export async function gateProtectedWrite(
  t: TaskRun,
  path: string,
  tool: string,
  content: string,
  turn: number,
): Promise<{ approved: string[] } | { rejected: string; resolution: Resolution }> {
  const touched = protectedPathsTouched(t.s.policy, [path]);
  if (touched.length === 0) return { approved: [] };
  const item = raise(t, 'risky_action', `Change protected path: ${touched[0]}`, 'awaiting_approval', {
    reason: 'change touches protected paths',
    paths: touched,
    tool,
    preview: preview(content, 4_000),
    turn,
  });
  const r = await waitFor(t, item);
  return r.action === 'approve' ? { approved: touched } : { rejected: touched[0]!, resolution: r };
}
