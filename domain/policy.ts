/**
 * Policy rules: merging a repo's `.agent/policy.yaml` into a task's policy and
 * deciding which commands and paths need a human.
 *
 * Pure module (the workflow evaluates policy itself, so a step's result cannot
 * talk its way past a gate).
 */
import { z } from 'zod';
import { Budget, Policy } from './task';

/** The contents of a repo's `.agent/policy.yaml`: every field optional, same meaning as the task's. */
export const RepoPolicy = z.strictObject({
  protected_paths: z.array(z.string().min(1).max(500)).max(200).optional(),
  approval_commands: Policy.shape.approval_commands.optional(),
  require_plan_approval: z.boolean().optional(),
  egress_allowlist: z.array(z.string().min(1).max(253)).max(200).optional(),
  budget: Budget.partial().optional(),
});
export type RepoPolicy = z.infer<typeof RepoPolicy>;

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
    egress_allowlist:
      repo.egress_allowlist === undefined
        ? task.egress_allowlist
        : task.egress_allowlist.filter((d) => repo.egress_allowlist!.includes(d)),
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

/** The first `approval_commands` pattern the command matches, or null when it may run unattended. */
export function commandNeedingApproval(policy: Policy, command: string): string | null {
  for (const pattern of policy.approval_commands) {
    if (new RegExp(pattern).test(command)) return pattern;
  }
  return null;
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
