/**
 * The task's state, carried whole across continue-as-new, and the run that holds it.
 */
import { CancellationScope } from '@temporalio/workflow';
import type { ProvisionResult, WorkerPlacement } from '../../activities/types';
import type { ModelMessage, ToolCall } from '../../activities/llm/types';
import type { Budget, InboxItem, Policy, TaskState, TraceEntry, Usage } from '../../domain/task';
import type { TaskWorkflowInput } from '../messages';
import type { TaskForgeEvent } from '../../domain/forge';
import type { CiState } from './ci';
import type { EgressState } from './egress';
import type { FoldState } from './review-fold';

/** Where the main line stands in a round: running the planner, publishing, or waiting for review. */
export type Phase = 'steps' | 'publish' | 'review';

/** Everything a run hands to the next one on continue-as-new. Plain JSON. */
export interface State {
  state: TaskState;
  updated_at: string;
  policy: Policy;
  budget: Budget;
  usage: Usage;
  provision: ProvisionResult | null;
  checkpoint: string | null;
  planned: boolean;
  phase: Phase;
  round: number;
  step_index: number;
  /** `round:index` of commands a human approved. */
  approved: string[];
  feedback: string | null;
  last_message: string | null;
  step_outputs: { index: number; name: string; exit_code: number; preview: string; output_ref: string }[];
  review_item: string | null;
  branch: string | null;
  commit: string | null;
  pushed: boolean;
  items: InboxItem[];
  item_seq: number;
  trace: TraceEntry[];
  trace_offset: number;
  deadline_at: string;
  idle_since: string;
  result: string | null;
  /** The LLM planner's loop; absent for recipes (and in state carried from before it existed). */
  agent?: AgentState;
  /** The task's network: grants and refusals; absent until the task has any (and in state from before egress existed). */
  egress?: EgressState;
  /** Where the setup phase stands; absent when the task has none (or it started before setup existed). */
  setup?: SetupState;
  /** Notifications started so far (names each one's workflow); absent until the first. */
  notify_seq?: number;
  /** The task's priority after escalations raised it; absent while it is the spec's. */
  priority?: number;
  /** The task's pull request on its forge, once a round opened it (absent: no forge, or none yet). */
  pr?: TaskPullRequest;
  /** Forge events taken and not yet acted on (reviews requesting changes), oldest first. */
  forge_queue?: TaskForgeEvent[];
  /** Forge deliveries taken, newest last, bounded: a redelivered event is refused. */
  forge_seen?: string[];
  /** Reviews taken, bounded, so one re-sent under another delivery id is refused. */
  forge_reviews?: number[];
  /** Reviewers (lower case) refused for lack of write access, bounded: their later reviews are refused unread. */
  forge_refused?: string[];
  /** Forge comments (`/agent …` on the pull request) taken as a decision or a message, newest last, bounded: one re-sent, to this run or a later one, is refused. */
  forge_comments?: number[];
  /** Writers' later reviews folded into the one they have waiting (see `review-fold.ts`); absent until the first fold. */
  review_folds?: FoldState;
  /** Reviewers (lower case) read as allowed to steer the task, bounded: only their later reviews fold. */
  forge_allowed?: string[];
  /** CI on the task's pull request: rounds failing checks sent in a row, commits taken and read; absent until the first failure or read. */
  ci?: CiState;
  /** What the source issue was last asked to show (see `mirror.ts`); absent until the first write, and for tasks not from a forge issue. */
  mirror?: MirrorState;
  /** Set while the task's sandbox is released (it waits on a human); the next sandbox work re-provisions it. */
  sandbox_released?: boolean;
  /** The worker that admitted the task's sandbox (tasks from before admission have none). */
  admitted?: WorkerPlacement;
  /** Set once the task's pull request was approved in the inbox and the task waits for it to be merged (see `merge.ts`). */
  merge?: MergeWait;
}

/** An approved pull request waiting to be merged: who approved which commit, and the worker's merge attempts. */
export interface MergeWait {
  approved_by: string;
  approved_at: string;
  /** The commit approved: the only one the worker ever merges. */
  sha: string;
  /** Merge attempts the worker made (none when merging is off). */
  attempts: number;
  /** The health alert raised when the worker gave up merging, if it did. */
  alert?: string;
  /** Set when the worker's own merge call merged it (not someone on the forge). */
  merged_here?: boolean;
}

/** The source issue's mirror as last written: the key of what it shows, and the status comment. */
export interface MirrorState {
  /** `mirrorKey` of the last mirror written (or tried: a failed write is not repeated until the mirror changes). */
  key: string;
  /** The status comment, once a write made or found it. */
  comment_id?: number;
  /** Set once a write failed, so the trace says so once, not once per change. */
  failed?: boolean;
}

/** The setup phase's progress: commands done, and whether its result came from (or went to) the cache. */
export interface SetupState {
  /** Commands finished so far; setup is over when it equals the number of commands (or the cache was restored). */
  done: number;
  finished: boolean;
  cache: 'hit' | 'saved' | 'not_saved' | 'off';
}

/** Where the LLM planner's loop stands. The conversation itself is in the artifact store. */
export interface AgentState {
  /** Model calls made so far. */
  turn: number;
  /** Messages to send with the next model call: tool results, answers, notes. */
  pending: ModelMessage[];
  /** Tool calls of the last model reply not handled yet, in order. */
  calls: ToolCall[];
  /** Results of the handled calls of the last reply. */
  results: { id: string; name: string; output: string }[];
  planned: boolean;
  plan: string | null;
  check_commands: string[] | null;
  check_failures: number;
  finish: { summary: string; risks: string; how_to_test: string } | null;
  /** Tool calls in a row that changed nothing, and the same command failing in a row. */
  no_progress: number;
  repeat_failures: number;
  last_failure: string | null;
  /** Replies in a row with neither a tool call nor finish. */
  idle_replies: number;
  /** Tokens the conversation took at the last call (the next call's estimate) and what that call cost. */
  context_tokens: number;
  last_call_usd: number;
  /** `check:<round>:<command>` of checks a human declined to run this round. */
  declined_checks?: string[];
  /** The first prompt's size estimate and the model's prices (USD per 1M tokens, null when unpriced); absent before they existed. */
  first_prompt_tokens?: number;
  price?: { input: number; output: number } | null;
  /** The working copy may not be at the checkpoint (a change was rolled back, or a tool call failed). */
  tree_unsure?: boolean;
}

/** How a task ended: its final state and a one-line result. */
export interface End {
  state: Extract<TaskState, 'done' | 'rejected' | 'failed' | 'cancelled' | 'timed_out'>;
  result: string;
}

/** The task's pull request as the workflow keeps it. */
export interface TaskPullRequest {
  repo: string;
  number: number;
  url: string;
  draft: boolean;
  /** Set when the forge said it was closed (merged or not): nothing closes it again. */
  closed: boolean;
  merged_at: string | null;
  /** Who the forge (or the worker's merge) says closed or merged it; absent in state from before it was kept. */
  closed_by?: string;
}

/** One run of the task workflow: its state, the scope the work runs in, and how it was asked to end. */
export class TaskRun {
  readonly s: State;
  /** The main line runs in this scope; cancelling it stops the running step or wait. */
  readonly work = new CancellationScope();
  endRequest: End | null = null;
  finished = false;
  /** Whether this run escalates items past their SLA (decided when it starts; see `sla.ts`). */
  slaActive: boolean | undefined = undefined;
  /** Notification workflows being started; awaited before the run ends or continues as new. */
  readonly notifying: Promise<void>[] = [];
  /** Whether this run mirrors the task onto its source issue (decided when it starts; see `mirror.ts`). */
  mirrorActive: boolean | undefined = undefined;
  /** The mirror write in flight, if any: awaited before the run ends or continues as new, so none is left half-done. */
  mirroring: Promise<void> | null = null;

  constructor(readonly input: TaskWorkflowInput) {
    this.s = (input.carried as State | undefined) ?? initialState(input);
  }

  /** Asks the main line to stop and end the task as `end` (the first request wins). */
  requestEnd(end: End): void {
    if (this.endRequest || this.finished) return;
    this.endRequest = end;
    this.work.cancel();
  }
}

/** The state of a task that has not started yet. */
function initialState(input: TaskWorkflowInput): State {
  const spec = input.spec;
  const now = new Date().toISOString();
  return {
    state: 'queued',
    updated_at: now,
    policy: spec.policy,
    budget: spec.budget,
    usage: { steps: 0, tokens: 0, usd: 0 },
    provision: null,
    checkpoint: null,
    planned: false,
    phase: 'steps',
    round: 1,
    step_index: 0,
    approved: [],
    feedback: null,
    last_message: null,
    step_outputs: [],
    review_item: null,
    branch: null,
    commit: null,
    pushed: false,
    items: [],
    item_seq: 0,
    trace: [],
    trace_offset: 0,
    deadline_at: addMinutes(input.created_at, spec.budget.max_wall_clock_minutes),
    idle_since: now,
    result: null,
  };
}

/** The LLM planner's loop before its first model call. */
export function newAgentState(): AgentState {
  return {
    turn: 0,
    pending: [],
    calls: [],
    results: [],
    planned: false,
    plan: null,
    check_commands: null,
    check_failures: 0,
    finish: null,
    no_progress: 0,
    repeat_failures: 0,
    last_failure: null,
    idle_replies: 0,
    context_tokens: 0,
    last_call_usd: 0,
  };
}

/** The ISO time `minutes` after `iso`. */
export function addMinutes(iso: string, minutes: number): string {
  return new Date(Date.parse(iso) + minutes * 60_000).toISOString();
}

/** The first line of `text`, trimmed. */
export function firstLine(text: string): string {
  return text.split('\n', 1)[0]!.trim();
}
