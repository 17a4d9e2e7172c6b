/**
 * Who may do what: roles, teams, the operator's team settings (TEAMS_FILE), and the pure rules the API
 * applies to every request and the workflow records with every decision.
 */
import { z } from 'zod';
import { eventsWanted, SlaLimits, Webhook, type NotificationEvent } from './notifications';
import { TeamName, type ItemKind, type Budget, type BudgetGrant } from './task';

export { TeamName };

/** Roles in increasing power: each includes what the ones before it may do. */
export const Role = z.enum(['viewer', 'submitter', 'approver', 'admin']);
export type Role = z.infer<typeof Role>;

/** Whether `have` includes what `need` may do. */
export function roleAtLeast(have: Role, need: Role): boolean {
  return Role.options.indexOf(have) >= Role.options.indexOf(need);
}

/** The team of tasks whose submitter belongs to no team (the local admin, a token without one). */
export const DEFAULT_TEAM = 'default';


/** How a caller proved who they are. */
export const CredentialKind = z.enum(['session', 'api_token', 'jwt', 'local_admin']);
export type CredentialKind = z.infer<typeof CredentialKind>;

/** An authenticated caller, as the API resolves it for one request. */
export interface Identity {
  /** Stable id: the OIDC `sub`, `token:<id>` for an API token, `local-admin`. */
  subject: string;
  /** What people read: the name or email claim, the token's name. */
  name: string;
  role: Role;
  /** Teams the caller belongs to; an admin sees every team whatever this says. */
  teams: string[];
  /** The credential: its kind and id (session id, token id, JWT `jti` or issuer), never the secret. */
  via: { kind: CredentialKind; id: string };
}

/** Who acted, as the trace and an item's resolution keep it: plain JSON, small, no secret. */
export interface Principal {
  subject: string;
  name: string;
  /** The team the caller acted for: the task's team when they belong to it, else null (an admin from outside). */
  team: string | null;
  /** `<kind>:<id>` of the credential, e.g. `session:3f2a…`, `api_token:ci-bot-7c1e`. */
  via: string;
}

/** The principal an identity acts as on a task of `taskTeam`. */
export function principalOf(identity: Identity, taskTeam: string | null): Principal {
  return {
    subject: identity.subject,
    name: identity.name,
    team: taskTeam !== null && identity.teams.includes(taskTeam) ? taskTeam : null,
    via: `${identity.via.kind}:${identity.via.id}`,
  };
}

/** Whether the identity sees tasks of `team` (a task from before teams existed has none: admins only). */
export function canSee(identity: Identity, team: string | null): boolean {
  if (identity.role === 'admin') return true;
  return team !== null && identity.teams.includes(team);
}

/** The teams whose tasks a listing shows the identity, or `'all'` for an admin. */
export function visibleTeams(identity: Identity): string[] | 'all' {
  return identity.role === 'admin' ? 'all' : [...identity.teams];
}

/** Highest total a budget may reach through grants, per field. */
export const GrantCeiling = z.strictObject({
  max_tokens: z.number().int().positive().optional(),
  max_usd: z.number().positive().optional(),
  max_steps: z.number().int().positive().optional(),
  max_wall_clock_minutes: z.number().positive().optional(),
});
export type GrantCeiling = z.infer<typeof GrantCeiling>;

/** What the operator sets for one team. */
export const TeamSettings = z.strictObject({
  grant_ceiling: GrantCeiling.optional(),
  /** A task's requester may not approve its own `risky_action` or `pr_review`. */
  separation_of_duties: z.boolean().default(false),
  /** How long an item of each kind may wait before it escalates (e.g. `risky_action: 30m`). */
  sla: SlaLimits.default({}),
  /** Where the team's notifications go: item opened, item escalated, task ended. */
  webhooks: z.array(Webhook).default([]),
});
export type TeamSettings = z.infer<typeof TeamSettings>;

/** The operator's TEAMS_FILE (YAML or JSON): the settings of each team. Who belongs to a team is said by their API token. */
export const AccessConfig = z.strictObject({
  teams: z.record(TeamName, TeamSettings).default({}),
});
export type AccessConfig = z.infer<typeof AccessConfig>;

/** The settings of `team`, or the defaults when the operator set none. */
export function teamSettings(config: AccessConfig, team: string | null): TeamSettings {
  return (team !== null ? config.teams[team] : undefined) ?? TeamSettings.parse({});
}

/** What a task of a team with `settings` carries from them when it starts: its SLA limits and the events its webhooks want. */
export function taskNotices(settings: TeamSettings): { sla?: SlaLimits; notify?: NotificationEvent[] } {
  const out: { sla?: SlaLimits; notify?: NotificationEvent[] } = {};
  if (Object.keys(settings.sla).length > 0) out.sla = { ...settings.sla };
  const events = eventsWanted(settings.webhooks);
  if (events.length > 0) out.notify = events;
  return out;
}

/** Item kinds a requester may not approve on their own task when the team separates duties. */
export const SEPARATED_KINDS: readonly ItemKind[] = ['risky_action', 'pr_review'];

/** Why the identity may not take `action` on an item of `kind` of a task (team, requester), or null when it may. */
export function decisionRefusal(
  identity: Identity,
  task: { team: string | null; requester: string | null },
  kind: ItemKind,
  action: string,
  settings: TeamSettings,
): string | null {
  if (!canSee(identity, task.team)) return 'this task belongs to another team';
  if (!roleAtLeast(identity.role, 'approver')) return `deciding an item needs the approver role (you are ${identity.role})`;
  if (settings.separation_of_duties && SEPARATED_KINDS.includes(kind) && action === 'approve' && task.requester === identity.subject) {
    return `separation of duties: the requester of a task may not approve its own ${kind}`;
  }
  return null;
}

/** Fields of a grant that would lift the budget above the team's ceiling, with the limit each would pass. */
export function grantOverCeiling(budget: Budget, grant: BudgetGrant, ceiling: GrantCeiling | undefined): { field: keyof GrantCeiling; after: number; ceiling: number }[] {
  if (!ceiling) return [];
  const out: { field: keyof GrantCeiling; after: number; ceiling: number }[] = [];
  for (const field of ['max_tokens', 'max_usd', 'max_steps', 'max_wall_clock_minutes'] as const) {
    const add = grant[field];
    const limit = ceiling[field];
    if (add === undefined || limit === undefined) continue;
    const after = budget[field] + add;
    if (after > limit) out.push({ field, after, ceiling: limit });
  }
  return out;
}
