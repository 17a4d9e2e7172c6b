/**
 * Who may do what: roles, teams, the operator's team settings (TEAMS_FILE), and the pure rules the API
 * applies to every request and the workflow records with every decision.
 */
import { z } from 'zod';
import { BUILTIN_GRANT_CEILING, grantOverCeiling } from './grant-ceiling';
import { DECIDE_ROLE, DEFAULT_TEAM, roleAtLeast, ROLES } from './roles';
import { eventsWanted, SlaLimits, Webhook, type NotificationEvent } from './notifications';
import { TeamName, type ItemKind } from './task';

export { TeamName };

/** Roles in increasing power: each includes what the ones before it may do (see domain/roles.ts). */
export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

export { roleAtLeast };

export { DEFAULT_TEAM };


/** How a caller proved who they are. */
export const CredentialKind = z.enum(['session', 'api_token', 'jwt', 'local_admin', 'github_webhook']);
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
export { BUILTIN_GRANT_CEILING, grantOverCeiling };

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

/** A role and teams the operator grants a person or a group signed in through the identity provider. */
export const Membership = z.strictObject({
  role: Role.default('viewer'),
  teams: z.array(TeamName).max(100).default([]),
});
export type Membership = z.infer<typeof Membership>;

/** A GitHub repository's `owner/name`, as GitHub allows them. */
export const GithubRepoName = z
  .string()
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}$/, 'a GitHub repository as owner/name')
  .refine((v) => !/\/\.{1,2}$/.test(v), 'a repository name may not be . or ..');

/** What GitHub intake does with a repository's events: which team its tasks belong to. */
export const GithubRepoSettings = z.strictObject({ team: TeamName });
export type GithubRepoSettings = z.infer<typeof GithubRepoSettings>;

/** The GitHub side of TEAMS_FILE: repositories whose labelled issues become tasks, each mapped to a team. */
export const GithubAccess = z.strictObject({
  repos: z.record(GithubRepoName, GithubRepoSettings).default({}),
});
export type GithubAccess = z.infer<typeof GithubAccess>;

/** The settings of a GitHub repository (`owner/name`, matched without regard to case, as GitHub does), or undefined when unmapped. */
export function githubRepoSettings(config: AccessConfig, repo: string): GithubRepoSettings | undefined {
  const wanted = repo.toLowerCase();
  const key = Object.keys(config.github.repos).find((k) => k.toLowerCase() === wanted);
  return key === undefined ? undefined : config.github.repos[key];
}

/**
 * The operator's TEAMS_FILE (YAML or JSON): the settings of each team, and who of the identity provider's
 * people belongs where. An API token says its own role and teams; a signed-in person gets those of `people`
 * (keyed by `sub`, or by an email the provider verified) and of `groups` (keyed by a name in the groups claim).
 * `github` maps repositories to the teams their issues' tasks belong to.
 */
export const AccessConfig = z.strictObject({
  teams: z.record(TeamName, TeamSettings).default({}),
  people: z.record(z.string().min(1), Membership).default({}),
  groups: z.record(z.string().min(1), Membership).default({}),
  /** Repositories whose labelled issues start tasks, and their teams (GitHub intake). */
  github: GithubAccess.prefault({}),
  /** The ceiling of every field a team's own `grant_ceiling` leaves out (unset fields: the built-in ones). */
  default_grant_ceiling: GrantCeiling.optional(),
});
export type AccessConfig = z.infer<typeof AccessConfig>;

/** The settings of `team`, or the defaults when the operator set none. */
export function teamSettings(config: AccessConfig, team: string | null): TeamSettings {
  return (team !== null ? config.teams[team] : undefined) ?? TeamSettings.parse({});
}

/**
 * The grant ceiling of tasks of `team`, field by field: the team's own, else the file's `default_grant_ceiling`,
 * else {@link BUILTIN_GRANT_CEILING}. Every field is bounded: a task of no team, of `DEFAULT_TEAM` or of a team
 * without settings gets the defaults, and an admin's grants are held to it like anyone's.
 */
export function grantCeilingOf(config: AccessConfig, team: string | null): Required<GrantCeiling> {
  return { ...BUILTIN_GRANT_CEILING, ...config.default_grant_ceiling, ...teamSettings(config, team).grant_ceiling };
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
  if (!roleAtLeast(identity.role, DECIDE_ROLE)) return `deciding an item needs the ${DECIDE_ROLE} role (you are ${identity.role})`;
  if (settings.separation_of_duties && SEPARATED_KINDS.includes(kind) && action === 'approve' && task.requester === identity.subject) {
    return `separation of duties: the requester of a task may not approve its own ${kind}`;
  }
  return null;
}

/** Which claims of an identity provider's token say a caller's role, teams and groups (unset: that claim is not read). */
export interface ClaimNames {
  role?: string;
  teams?: string;
  groups?: string;
}

/**
 * Claims anyone may set on their own account at a typical provider: never a source of role, team or group.
 * `email` is among them; an email counts for `people` only when the provider says it verified it.
 */
export const SELF_EDITABLE_CLAIMS: readonly string[] = [
  'name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username', 'profile', 'picture',
  'website', 'email', 'gender', 'birthdate', 'zoneinfo', 'locale', 'phone_number', 'address',
];

/** Longest name kept of a claim: it goes into every trace entry the caller makes. */
const MAX_NAME_CHARS = 100;

/** Subjects this backend gives its own credentials; a provider's `sub` may not pose as one of them. */
const RESERVED_SUBJECT = /^(local-admin$|token:)/;

/** Thrown when a provider's claims cannot stand for a caller: no `sub`, or one that poses as our own credentials. */
export class UnusableClaimsError extends Error {
  override readonly name = 'UnusableClaimsError';
}

/** The strings a claim holds: a string (space- or comma-separated) or an array of strings; anything else is none. */
function claimStrings(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/[\s,]+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string' && v.length > 0);
  return [];
}

/**
 * The identity a provider's verified claims (an ID token and its userinfo, or a JWT access token) stand for.
 * Role and teams come only from the operator's `people` and `groups` and from the claims `names` configures,
 * the highest role and every team of any of them; with none of those, the caller is a viewer in no team and
 * sees nothing. A claim name may not be self-editable (see {@link SELF_EDITABLE_CLAIMS}), and a team named in a
 * claim need not have settings. Pure: the same claims and configuration always give the same identity.
 */
export function identityFromClaims(
  claims: Record<string, unknown>,
  config: Pick<AccessConfig, 'people' | 'groups'>,
  options: { names: ClaimNames; via: Identity['via'] },
): Identity {
  const sub = claims.sub;
  if (typeof sub !== 'string' || sub.length === 0) throw new UnusableClaimsError('the token has no sub claim');
  if (RESERVED_SUBJECT.test(sub)) throw new UnusableClaimsError(`the sub claim ${JSON.stringify(sub)} is one this backend reserves for its own credentials`);
  for (const name of Object.values(options.names)) {
    if (name !== undefined && SELF_EDITABLE_CLAIMS.includes(name)) throw new UnusableClaimsError(`the ${name} claim is one people edit themselves; it cannot say a role, team or group`);
  }
  const grants: Membership[] = [];
  const own = Object.hasOwn(config.people, sub) ? config.people[sub] : undefined;
  if (own) grants.push(own);
  // An email anyone can type into their profile names nobody until the provider has verified it.
  // ASCII only: Unicode case folding would let a verified "\u212Aim@…" (Kelvin sign) stand for "kim@…".
  if (claims.email_verified === true && typeof claims.email === 'string' && /^[\x21-\x7e]+$/.test(claims.email)) {
    const email = claims.email.toLowerCase();
    const byEmail = Object.entries(config.people).find(([key]) => key !== sub && key.toLowerCase() === email);
    if (byEmail) grants.push(byEmail[1]);
  }
  if (options.names.groups !== undefined) {
    for (const group of claimStrings(claims[options.names.groups])) if (Object.hasOwn(config.groups, group)) grants.push(config.groups[group]!);
  }
  const claimedRole = options.names.role === undefined ? undefined : Role.safeParse(claims[options.names.role]);
  const claimedTeams = options.names.teams === undefined ? [] : claimStrings(claims[options.names.teams]).filter((t) => TeamName.safeParse(t).success);
  grants.push({ role: claimedRole?.success ? claimedRole.data : 'viewer', teams: claimedTeams });
  const role = grants.reduce<Role>((best, g) => (roleAtLeast(g.role, best) ? g.role : best), 'viewer');
  const teams = [...new Set(grants.flatMap((g) => g.teams))].sort();
  const display = [claims.name, claims.email, claims.preferred_username, claims.client_id].find((v): v is string => typeof v === 'string' && v.length > 0);
  return { subject: sub, name: (display ?? sub).slice(0, MAX_NAME_CHARS), role, teams, via: options.via };
}
