/**
 * The task wire format and every shape shared by the API and the workflows.
 *
 * Pure module: no I/O, no Node built-ins, so the workflow bundle may import it.
 * Wire names are snake_case, as in the design.
 */
import { z } from 'zod';
import type { GrantCeiling, Principal } from './access';
import { egressEntryError, type EgressView } from './egress';

/** A team name as TEAMS_FILE, token claims and search attributes carry it. */
export const TeamName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a team name: 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)');

/** Guard against strings git or a shell could read as an option. */
const notAnOption = (s: string): boolean => !s.startsWith('-');

/** Checks that a user-supplied pattern compiles as a JavaScript regular expression. */
function compiles(pattern: string): boolean {
  try {
    new RegExp(pattern);
    return true;
  } catch {
    return false;
  }
}

/** One entry of an egress allowlist: a domain, a `*.` wildcard, or a preset name (see `domain/egress.ts`). */
export const EgressEntry = z
  .string()
  .min(1)
  .max(253)
  .superRefine((v, ctx) => {
    const why = egressEntryError(v);
    if (why !== null) ctx.addIssue({ code: 'custom', message: why });
  });

/** Limits on what a task may consume; exhausting one opens a `budget_request` (wall clock ends the task). */
export const Budget = z.strictObject({
  max_tokens: z.number().int().nonnegative().default(200_000),
  max_usd: z.number().nonnegative().default(5),
  max_steps: z.number().int().positive().default(50),
  max_wall_clock_minutes: z.number().positive().max(7 * 24 * 60).default(240),
  max_idle_minutes: z.number().positive().max(7 * 24 * 60).default(30),
});
export type Budget = z.infer<typeof Budget>;

/** What needs a human before it happens; a repo's `.agent/policy.yaml` can only add to it. */
export const Policy = z.strictObject({
  protected_paths: z.array(z.string().min(1).max(500)).max(200).default([]),
  approval_commands: z
    .array(z.string().min(1).max(500).refine(compiles, 'not a valid regular expression'))
    .max(200)
    .default([]),
  require_plan_approval: z.boolean().default(false),
  /** Domains the planner's phase may reach through the egress proxy, within the operator's EGRESS_ALLOW; empty: none. */
  egress_allowlist: z.array(EgressEntry).max(200).default([]),
});
export type Policy = z.infer<typeof Policy>;

/** One command of a recipe, run in the sandbox's working copy. */
export const RecipeStep = z.strictObject({
  run: z.string().min(1).max(8_000),
  name: z.string().min(1).max(200).optional(),
  timeout_seconds: z.number().int().positive().max(24 * 3600).default(600),
});
export type RecipeStep = z.infer<typeof RecipeStep>;

/**
 * Commands that prepare the environment before the planner's phase (installing dependencies), run in
 * the same sandbox with the setup allowlist. What they leave in ignored paths (node_modules, .venv) is
 * kept and cached for the next task on the same repository; their changes to tracked files are undone.
 */
export const SetupSpec = z.strictObject({
  commands: z.array(z.string().min(1).max(8_000)).min(1).max(50),
  /** Domains setup may reach, within EGRESS_ALLOW; default: the package-registry presets EGRESS_ALLOW names. */
  egress_allowlist: z.array(EgressEntry).max(200).optional(),
  timeout_seconds: z.number().int().positive().max(6 * 3600).default(1_800),
});
export type SetupSpec = z.infer<typeof SetupSpec>;

/** A fixed list of commands: the no-LLM path for maintenance work. */
export const RecipePlanner = z.strictObject({
  kind: z.literal('recipe'),
  steps: z.array(RecipeStep).min(1).max(500),
});
export type RecipePlanner = z.infer<typeof RecipePlanner>;

/**
 * A language model decides: it reads the repo, plans, edits, runs tests and asks when it must,
 * through tools that run in the sandbox and under the task's policy.
 */
export const LlmPlanner = z.strictObject({
  kind: z.literal('llm'),
  /** `gemini` (GEMINI_API_KEY) or `openai`: any OpenAI-compatible chat-completions server (OPENAI_BASE_URL, OPENAI_API_KEY). */
  provider: z.enum(['gemini', 'openai']).default('gemini'),
  model: z.string().min(1).max(200).default('gemini-2.5-flash'),
  /** Commands the self-check runs before output; when empty they are detected from package.json or a Makefile. */
  check_commands: z.array(z.string().min(1).max(2_000)).max(20).default([]),
  /** Self-check rounds that may fail before the task asks a human instead of opening a review. */
  max_check_rounds: z.number().int().min(1).max(20).default(3),
  /** Output tokens one model call may produce. */
  max_output_tokens: z.number().int().min(256).max(65_536).default(8_192),
});
export type LlmPlanner = z.infer<typeof LlmPlanner>;

/** How the task decides what to do next. */
export const Planner = z.discriminatedUnion('kind', [RecipePlanner, LlmPlanner]);
export type Planner = z.infer<typeof Planner>;

/** Task priorities run from 1, first served, to 5. */
export const HIGHEST_PRIORITY = 1;
export const LOWEST_PRIORITY = 5;

/** A task as submitted through `POST /v1/tasks`; parsing fills every default. */
export const TaskSpec = z.strictObject({
  repo: z
    .string()
    .min(1)
    .max(2_000)
    .refine(notAnOption, 'must not start with "-"')
    .describe('git URL or local path of the repository'),
  base_branch: z
    .string()
    .min(1)
    .max(250)
    .regex(/^[A-Za-z0-9._\/-]+$/, 'not a valid branch name')
    .refine(notAnOption, 'must not start with "-"')
    .default('main'),
  goal: z.string().min(1).max(20_000),
  context_files: z.array(z.string().min(1).max(1_000)).max(100).default([]),
  budget: Budget.prefault({}),
  policy: Policy.prefault({}),
  priority: z.number().int().min(HIGHEST_PRIORITY).max(LOWEST_PRIORITY).default(3),
  planner: Planner,
  /** Setup commands; without them a repository's `.agent/setup.sh` is the setup, if it has one. */
  setup: SetupSpec.optional(),
  /** Set by the API from the caller's identity; a value in the body is replaced. */
  requester: z.string().min(1).max(200).default('anonymous'),
  /** The team the task belongs to: one of the caller's teams (required when they have several); the API fills it. */
  team: TeamName.optional(),
  labels: z.array(z.string().min(1).max(100)).max(50).default([]),
});
export type TaskSpec = z.infer<typeof TaskSpec>;
/** A task before defaults are applied, as a client writes it. */
export type TaskSpecInput = z.input<typeof TaskSpec>;

/** Every state a task passes through; the last five are terminal. */
export const TaskState = z.enum([
  'queued',
  'provisioning',
  'planning',
  'running',
  'awaiting_approval',
  'awaiting_answer',
  'awaiting_budget',
  'stuck',
  'pr_open',
  'changes_requested',
  /** Approved in the inbox; its pull request is being merged, or waits to be merged on the forge. */
  'awaiting_merge',
  'done',
  'rejected',
  'failed',
  'cancelled',
  'timed_out',
]);
export type TaskState = z.infer<typeof TaskState>;

/** The kinds of thing that can land in the Agent Inbox. */
export const ItemKind = z.enum([
  'pr_review',
  'clarification',
  'risky_action',
  'plan_approval',
  'budget_request',
  'health_alert',
]);
export type ItemKind = z.infer<typeof ItemKind>;

/** Everything a human can do to a task. */
export const Action = z.enum(['approve', 'reject', 'answer', 'request_changes', 'grant_budget', 'message', 'cancel']);
export type Action = z.infer<typeof Action>;

/** Extra budget granted by a human; each field is added to the current limit. */
export const BudgetGrant = z
  .strictObject({
    max_tokens: z.number().int().positive().optional(),
    max_usd: z.number().positive().optional(),
    max_steps: z.number().int().positive().optional(),
    max_wall_clock_minutes: z.number().positive().optional(),
  })
  .refine((g) => Object.values(g).some((v) => v !== undefined), 'grant at least one budget field');
export type BudgetGrant = z.infer<typeof BudgetGrant>;

/** Accepted for older clients and ignored: the actor is always the authenticated caller. */
const Actor = z.string().min(1).max(200);

/** A decision as posted to `POST /v1/tasks/:id/inbox/:item_id`. */
export const DecisionBody = z
  .strictObject({
    action: Action,
    comment: z.string().max(20_000).optional(),
    answer: z.string().min(1).max(20_000).optional(),
    budget: BudgetGrant.optional(),
    actor: Actor.optional(),
  })
  .superRefine((d, ctx) => {
    if (d.action === 'answer' && d.answer === undefined) {
      ctx.addIssue({ code: 'custom', path: ['answer'], message: 'required for action "answer"' });
    }
    if (d.action === 'grant_budget' && d.budget === undefined) {
      ctx.addIssue({ code: 'custom', path: ['budget'], message: 'required for action "grant_budget"' });
    }
    if (d.action === 'request_changes' && !d.comment) {
      ctx.addIssue({ code: 'custom', path: ['comment'], message: 'required for action "request_changes"' });
    }
    if (d.action === 'message' && !d.comment) {
      ctx.addIssue({ code: 'custom', path: ['comment'], message: 'required for action "message"' });
    }
  });
export type DecisionBody = z.infer<typeof DecisionBody>;

/** What the workflow is told of who acts: `actor` is the display name, `by` the authenticated principal (absent in older histories). */
export interface ActedBy {
  actor: string;
  by?: Principal;
}

/**
 * The decision the workflow receives: the body plus the item it names and who decided, and for a grant the
 * team's ceiling, which the workflow checks again against the budget as it is when the grant lands.
 */
export type Decision = Omit<DecisionBody, 'actor'> & { item_id: string; ceiling?: GrantCeiling } & ActedBy & FromForgeComment;

/** A decision or message made from a comment on the forge (`/agent …` on the task's pull request): the comment, taken once by the task. */
export interface FromForgeComment {
  /** The forge comment's id; absent for everything else (and in histories from before it was kept). */
  forge_comment_id?: number;
}

/** A free-form message to a task (`POST /v1/tasks/:id/messages`). */
export const MessageBody = z.strictObject({
  text: z.string().min(1).max(20_000),
  actor: Actor.optional(),
});
export type MessageBody = z.infer<typeof MessageBody>;

/** A cancellation request (`POST /v1/tasks/:id/cancel`). */
export const CancelBody = z.strictObject({
  reason: z.string().max(2_000).optional(),
  actor: Actor.optional(),
});
export type CancelBody = z.infer<typeof CancelBody>;

/** Reference to a blob in the artifact store, with a bounded preview the workflow may carry. */
export interface ArtifactRef {
  ref: string;
  bytes: number;
}

/** How an item was settled. */
export interface Resolution {
  action: Action;
  actor: string;
  by?: Principal;
  at: string;
  comment?: string;
  answer?: string;
  budget?: BudgetGrant;
}

/** One thing waiting for (or settled by) a human. Plain JSON: it lives in workflow state. */
export interface InboxItem {
  item_id: string;
  kind: ItemKind;
  title: string;
  created_at: string;
  status: 'pending' | 'resolved' | 'closed';
  /** Bounded detail for the reviewer: command, diff preview, output tail, summary. */
  detail: Record<string, unknown>;
  resolution?: Resolution;
  /** When the item passes its team's SLA for its kind; absent without one. */
  due_at?: string;
  /** When it escalated (passed `due_at` while pending). */
  escalated_at?: string;
}

/** The inbox fields kept in the workflow memo so the inbox needs no per-task query. */
export interface InboxItemSummary {
  item_id: string;
  kind: ItemKind;
  title: string;
  created_at: string;
  due_at?: string;
  escalated_at?: string;
}

/** One line of a task's trace: transitions, steps, decisions, notes. */
export interface TraceEntry {
  at: string;
  type: string;
  message: string;
  actor?: string;
  data?: Record<string, unknown>;
}

/** Resources consumed so far. */
export interface Usage {
  steps: number;
  tokens: number;
  usd: number;
  /** Bytes the sandbox sent and received through the egress proxy; absent before the task had any. */
  net_bytes_sent?: number;
  net_bytes_received?: number;
}

/**
 * A task's sandbox: `none` before provisioning and after the end, `live` on its worker, `released` (checkpointed
 * and torn down while the task waits on a human; the next step provisions it again).
 */
export type SandboxState = 'none' | 'live' | 'released';

/** What `GET /v1/tasks/:id` shows: the workflow's own view of the task. */
export interface TaskView {
  task_id: string;
  state: TaskState;
  spec: TaskSpec;
  created_at: string;
  updated_at: string;
  usage: Usage;
  budget: Budget;
  policy: Policy;
  isolation: string;
  sandbox_id: string | null;
  /** A queued task's place in the admission order, 1 first (set by the API; absent when not queued). */
  queue_position?: number;
  /** Whether the task holds a sandbox now (absent in views recorded before it was shown). */
  sandbox?: SandboxState;
  branch: string | null;
  commit: string | null;
  round: number;
  step_index: number;
  items: InboxItem[];
  trace_count: number;
  result: string | null;
  /** The task's network: absent for tasks that never had any allowlist, grant or refusal. */
  egress?: EgressView;
  /** The task's pull request on its forge: absent until a round opened one. */
  pull_request?: { repo: string; number: number; url: string; draft: boolean; closed: boolean; merged_at: string | null; closed_by?: string };
  /** Once the pull request was approved in the inbox: who approved which commit, how it is merged (absent: on the forge), attempts so far. */
  merge?: { approved_by: string; approved_at: string; sha: string; method: string | null; attempts: number };
}

/** The contents of a repo's `.agent/policy.yaml`: every field optional, same meaning as the task's. */
export const RepoPolicy = z.strictObject({
  protected_paths: z.array(z.string().min(1).max(500)).max(200).optional(),
  approval_commands: z.array(z.string().min(1).max(500).refine(compiles, 'not a valid regular expression')).max(200).optional(),
  require_plan_approval: z.boolean().optional(),
  egress_allowlist: z.array(EgressEntry).max(200).optional(),
  /** Narrows the setup phase's allowlist the way `egress_allowlist` narrows the planner's. */
  setup_egress_allowlist: z.array(EgressEntry).max(200).optional(),
  budget: Budget.partial().optional(),
});
export type RepoPolicy = z.infer<typeof RepoPolicy>;
