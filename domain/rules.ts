/**
 * Pure rules over tasks: which actions apply to which item, when a state is final,
 * how policies merge and which commands and paths need a human.
 *
 * No zod and no Node built-ins: the workflow bundle imports this, and keeping it
 * small keeps every cached workflow small.
 */
import { intersectEgress } from './egress';
import { readCommandLine, type OPAQUE_REASONS } from './shell-commands';
import type { Budget, Policy, RepoPolicy, SandboxState, TaskState } from './task';

/** States after which nothing more happens to a task. */
export const TERMINAL_STATES: readonly TaskState[] = ['done', 'rejected', 'failed', 'cancelled', 'timed_out'];

/** True when a task in this state has ended. */
export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.includes(state);
}

export { ACTIONS_BY_KIND } from './item-actions';

const union = (a: readonly string[], b: readonly string[] | undefined): string[] => [...new Set([...a, ...(b ?? [])])];

/**
 * Merge a repo policy into a task policy. The result is never looser than either:
 * lists of gates are unioned, flags or-ed, and an egress allowlist can only shrink.
 */
export function mergePolicy(task: Policy, repo: RepoPolicy | null): Policy {
  if (!repo) return task;
  return {
    protected_paths: union(task.protected_paths, repo.protected_paths),
    approval_commands: union(task.approval_commands, repo.approval_commands),
    require_plan_approval: task.require_plan_approval || (repo.require_plan_approval ?? false),
    egress_allowlist: repo.egress_allowlist === undefined ? task.egress_allowlist : intersectEgress(task.egress_allowlist, repo.egress_allowlist),
  };
}

/** Apply a repo's budget ceilings: each limit becomes the smaller of the two. */
export function mergeBudget(task: Budget, repo: RepoPolicy | null): Budget {
  const ceiling = repo?.budget;
  if (!ceiling) return task;
  const min = (a: number, b: number | undefined): number => (b === undefined ? a : Math.min(a, b));
  return {
    max_tokens: min(task.max_tokens, ceiling.max_tokens),
    max_usd: min(task.max_usd, ceiling.max_usd),
    max_steps: min(task.max_steps, ceiling.max_steps),
    max_wall_clock_minutes: min(task.max_wall_clock_minutes, ceiling.max_wall_clock_minutes),
    max_idle_minutes: min(task.max_idle_minutes, ceiling.max_idle_minutes),
  };
}

/**
 * The first `approval_commands` pattern the raw command line matches: the matching before
 * commands were parsed, for workflows that started before it (choose with `patched()`).
 */
export function commandMatchingPatternOnly(policy: Policy, command: string): string | null {
  return policy.approval_commands.find((pattern) => new RegExp(pattern).test(command)) ?? null;
}

/**
 * Why a command needs a human before it runs, or null when it may run unattended: the first
 * `approval_commands` pattern it matches, else a reason from {@link OPAQUE_REASONS} when a
 * static reading cannot tell what it runs. A pattern is tried on the whole command line (as
 * before), on every script a nested shell receives, and on each command it runs, resolved
 * (`r''m -rf` reads `rm -rf`), unwrapped (`sudo rm` also reads `rm`) and found wherever it
 * hides (`$(…)`, `sh -c`, `eval`, bodies, here-documents fed to a shell).
 *
 * A speed bump, not the boundary: the sandbox, egress and protected paths are.
 */
export function commandNeedingApproval(policy: Policy, command: string): string | null {
  // No patterns, nothing to approve: and the parser is not even loaded.
  if (policy.approval_commands.length === 0) return null;
  const reading = readCommandLine(command);
  const texts = [command, ...reading.scripts, ...reading.commands];
  for (const pattern of policy.approval_commands) {
    const re = new RegExp(pattern);
    if (texts.some((t) => re.test(t))) return pattern;
  }
  return reading.opaque;
}

/**
 * Compile a gitignore-style glob to a RegExp over repo-relative paths.
 * `**` spans directories, `*` and `?` stay within one segment, a trailing `/`
 * means everything below, and a pattern without `/` matches at any depth.
 */
export function globToRegExp(glob: string): RegExp {
  let g = glob.trim().replace(/^\.\//, '');
  if (g.endsWith('/')) g += '**';
  const anchored = g.includes('/');
  if (g.startsWith('/')) g = g.slice(1);
  let out = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*') {
      if (g[i + 1] === '*') {
        const slashAfter = g[i + 2] === '/';
        out += slashAfter ? '(?:.*/)?' : '.*';
        i += slashAfter ? 2 : 1;
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else {
      out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  // A match on a directory covers everything inside it.
  return new RegExp(`^${anchored ? '' : '(?:.*/)?'}${out}(?:/.*)?$`);
}

/** The paths among `paths` that fall under any of the policy's protected globs. */
export function protectedPathsTouched(policy: Policy, paths: readonly string[]): string[] {
  if (policy.protected_paths.length === 0) return [];
  const res = policy.protected_paths.map(globToRegExp);
  return paths.filter((p) => res.some((re) => re.test(p)));
}

/** A state or kind name as words for people (`timed_out` → `timed out`). */
export function asWords(name: string): string {
  return name.replace(/_/g, ' ');
}

/** Clip a string to `max` characters, marking what was cut so nobody mistakes a preview for the whole. */
export function preview(text: string, max = 2_000): string {
  if (text.length <= max) return text;
  const cut = text.length - max;
  return `${text.slice(0, Math.floor(max / 2))}\n… [${cut} characters elided] …\n${text.slice(text.length - Math.ceil(max / 2))}`;
}

/** The sandbox state a task shows, from whether it was provisioned and released and where it stands. */
export function sandboxStateOf(state: TaskState, provisioned: boolean, released: boolean): SandboxState {
  if (!provisioned || isTerminal(state)) return 'none';
  return released ? 'released' : 'live';
}
