/**
 * Inputs and outputs of every activity: the contract between the workflow
 * (which imports this file as types only) and the worker's implementations.
 */
import type { CommitChecks } from '../domain/checks';
import type { PublishPullRequest, PublishedPullRequest, ReviewFeedback } from '../domain/forge';
import type { MirrorIssue } from '../domain/forge-mirror';
import type { MergeAttempt, MergePullRequest } from '../domain/merge';
import type { ArtifactRef } from '../domain/task';
import type { RepoPolicy } from '../domain/task';
import type { EgressGrant, EgressReport } from './egress/types';
import type { AgentActivities } from './llm/agent';
import type { NotifyActivities } from './notify/webhooks';
import type { WriteTaskRecordInput } from './records/task-record';
import type { SandboxHandle } from './sandbox/driver';

/** A task's sandbox and the git state it started from. */
export interface ProvisionResult {
  sandbox: SandboxHandle;
  /** Commit of `base_branch` the working copy was cloned at. */
  base_commit: string;
  /** Tree id of the pristine working copy: the first checkpoint. */
  checkpoint: string;
  /** Parsed `.agent/policy.yaml`, or null when the repo has none. */
  repo_policy: RepoPolicy | null;
  /** Whether the repo has an `AGENTS.md` (the LLM planner reads it). */
  has_agents_md: boolean;
  /** The operator's egress ceiling (EGRESS_ALLOW, as written) this worker enforces; absent from workers before egress existed. */
  egress_ceiling?: string[];
  /** The setup phase to run, or null when there is none; absent from workers before setup existed. */
  setup?: ProvisionedSetup | null;
  /** The worker holding the sandbox, whose own queue takes the task's sandbox work; absent from workers without one (all work on the shared queue). */
  worker?: WorkerPlacement;
  /**
   * Set when provisioning was asked to defer the sandbox: the repository was cloned and read, its first checkpoint
   * kept in the artifact store, and then the copy removed; no sandbox exists and no worker holds a place for it.
   * `sandbox` is the handle it will have. The first sandbox work provisions it, through admission, from the checkpoint.
   */
  deferred?: true;
}

/** A worker that holds sandboxes: where its sandbox work goes, when it counts as gone, and when a parked sandbox is given back. */
export interface WorkerPlacement {
  /** The worker's name (WORKER_ID), shown in traces. */
  id: string;
  /** The task queue only this worker polls. */
  queue: string;
  /** Seconds sandbox work may wait on that queue before the worker counts as gone and the task re-provisions elsewhere. */
  lost_after_seconds: number;
  /** Minutes a task may wait on a human before its sandbox is released (0: never). */
  release_after_minutes: number;
}

/** Where a re-provisioned sandbox starts from: the task's base commit, its pushed branch and its last checkpoint. */
export interface ProvisionRestore {
  base_commit: string;
  /** Tree id to restore (from this worker's clone, else from the task's checkpoint bundle in the artifact store). */
  checkpoint: string;
  /** The task's pushed branch, fetched so the next publish builds on it; null before the first push. */
  branch: string | null;
  /** The commit the task last pushed to it: the branch is built on only while its tip is that commit. */
  commit: string | null;
}

/** A task's setup phase as provisioning found it. */
export interface ProvisionedSetup {
  /** The task's setup commands, or the repository's `.agent/setup.sh` (its text, as of the base commit). */
  commands: string[];
  source: 'task' | 'repo';
  /** Host patterns setup may reach (within the ceiling, the repository's setup list and the task's). */
  allow: string[];
  /** The setup cache entry for this repository, lockfiles, commands and allowlist; `hit`: restored into the working copy, so setup need not run. */
  cache: { key: string; hit: boolean; files: number; bytes: number; /** Why a cached setup was refused (and removed), so setup runs instead. */ refused?: string } | null;
}

/** One command to run against the working copy as it was at `checkpoint`. */
export interface RunStepInput {
  task_id: string;
  sandbox: SandboxHandle;
  /** Step number, for artifact names. */
  index: number;
  round: number;
  command: string;
  timeout_seconds: number;
  /** Tree id the working copy must match before the command runs (restored if it does not: a retried step never sees a half-run predecessor). */
  checkpoint: string;
  env: Record<string, string>;
  /** What the command may reach through the egress proxy (within the worker's ceiling); absent: nothing. */
  egress?: EgressGrant;
}

/** What a step did, with its full output in the artifact store. */
export interface RunStepResult {
  exit_code: number;
  timed_out: boolean;
  duration_ms: number;
  output_preview: string;
  output: ArtifactRef;
  /** Tree id of the working copy after the command. */
  checkpoint: string;
  /** Repo-relative paths that differ between the input and output checkpoints. */
  changed_paths: string[];
  /** What the egress proxy saw of the command's traffic; absent where the sandbox routes no egress. */
  egress?: EgressReport;
}

/** What saving the setup cache did. */
export interface SaveSetupCacheResult {
  saved: boolean;
  files: number;
  bytes: number;
  /** Why nothing was saved (too large, nothing to keep, caching off). */
  reason?: string;
}

/** A bounded view of a diff between two trees (or a tree and the base commit). */
export interface DiffResult {
  stat: string;
  preview: string;
  diff: ArtifactRef;
  files_changed: number;
}

/** The output of a round: a commit pushed to `agent/<task_id>`. */
export interface PublishResult {
  /** False when the recipe changed nothing since the last published commit (or the base). */
  changed: boolean;
  branch: string;
  commit: string | null;
  stat: string;
  diff_preview: string;
  diff: ArtifactRef | null;
  files_changed: number;
}

/** The worker's activities, as the workflow sees them (the LLM planner's come from `llm/agent.ts`, delivery's from `notify/webhooks.ts`). */
/** A task's pull request on its forge (GitHub); each throws a non-retryable failure when the worker has no forge access configured. */
export interface PullRequestActivities {
  /** Opens (as a draft) or updates the round's pull request, reports its self-check, marks it ready when that passed; idempotent. */
  publishPullRequest(input: PublishPullRequest): Promise<PublishedPullRequest>;
  /** Closes the pull request with a comment saying why; succeeds when it is closed already. */
  closePullRequest(input: { repo: string; number: number; comment: string }): Promise<void>;
  /** A submitted review, its comments batched, and whether its author may steer the agent. */
  readReviewFeedback(input: { repo: string; number: number; review_id: number; reviewer: string }): Promise<ReviewFeedback>;
  /** Comments on the pull request. */
  commentOnPullRequest(input: { repo: string; number: number; body: string }): Promise<void>;
  /** Merges the approved pull request at exactly the approved commit, or says why not yet or not at all; one merged or closed already is reported. */
  mergePullRequest(input: MergePullRequest): Promise<MergeAttempt>;
  /** The latest check runs of a commit, bounded, the task's own self-check left out: which failed, with their output. */
  readCommitChecks(input: { repo: string; commit: string }): Promise<CommitChecks>;
  /** Sets the source issue's one `agent:*` label and edits (or posts) the task's status comment there; idempotent. */
  mirrorIssue(input: MirrorIssue): Promise<{ comment_id: number }>;
}

export interface Activities extends AgentActivities, NotifyActivities, PullRequestActivities {
  /** Clone `repo` at `base_branch` into a private working copy and provision the sandbox around it; re-attaches when it exists. */
  provisionSandbox(input: {
    task_id: string;
    repo: string;
    base_branch: string;
    /** The task's egress allowlist (the repo's policy can only narrow it); absent in histories recorded before it existed. */
    egress_allowlist?: string[];
    /** When the task's wall-clock budget runs out; sandboxes that can enforce a deadline get it. */
    deadline_at?: string;
    /** The task's setup commands and setup allowlist (without them, the repository's `.agent/setup.sh`). */
    setup?: { commands: string[]; egress_allowlist?: string[] };
    /** Set when the task had a sandbox before (released, or lost with its worker): what to bring back. */
    restore?: ProvisionRestore;
    /** Clone and read the repository but make no sandbox yet (the task waits on a human first); see {@link ProvisionResult.deferred}. */
    defer_sandbox?: boolean;
  }): Promise<ProvisionResult>;
  /**
   * Give a parked task's sandbox back: nothing left running, its checkpoint kept in the artifact store, the
   * sandbox and the working copy removed. Provisioning with `restore` brings both back, on any worker.
   */
  releaseSandbox(input: { task_id: string; sandbox: SandboxHandle; checkpoint: string }): Promise<void>;
  /**
   * Admit the task to this worker (run from the admission queue, which a worker polls only while it has room):
   * from here until teardown or release the task counts against the worker's WORKER_MAX_SANDBOXES.
   */
  admitSandbox(input: { task_id: string }): Promise<WorkerPlacement>;
  /**
   * Keep what setup left in the working copy's ignored paths under `key`, for the next task on the same
   * repository; taken while nothing in the sandbox runs. Skipped (with a reason) when too large or empty.
   */
  saveSetupCache(input: { task_id: string; sandbox: SandboxHandle; key: string }): Promise<SaveSetupCacheResult>;
  /** Run one command in the sandbox, heartbeating; cancellation kills it. */
  runStep(input: RunStepInput): Promise<RunStepResult>;
  /** Diff between two checkpoints, optionally limited to paths. */
  diffCheckpoints(input: { task_id: string; sandbox: SandboxHandle; from: string; to: string; paths?: string[]; name: string }): Promise<DiffResult>;
  /** Commit the last gated checkpoint on top of the last published commit and push `agent/<task_id>` to origin; idempotent. */
  publishOutput(input: {
    task_id: string;
    sandbox: SandboxHandle;
    repo: string;
    base_commit: string;
    round: number;
    message: string;
    /** Tree to publish: the last checkpoint a gate saw (what ships is exactly that). */
    tree: string;
  }): Promise<PublishResult>;
  /** Delete the pushed branch from origin; succeeds when it is already gone. */
  deleteBranch(input: { repo: string; branch: string }): Promise<void>;
  /** Kill and remove the sandbox and its working copy; succeeds when already gone. */
  teardownSandbox(input: { task_id: string; sandbox: SandboxHandle | null }): Promise<void>;
  /**
   * Append trace entries evicted from workflow state to the task's trace artifact; `first_index` is the
   * position of `entries[0]` in the whole trace, so a retried append writes nothing twice.
   */
  archiveTrace(input: { task_id: string; first_index: number; entries: unknown[] }): Promise<void>;
  /**
   * Write the ended task's final record (its view, and its whole trace: the archived head then `entries`) to the
   * artifact store, so it stays readable after Temporal's retention; a retry writes the same record.
   */
  writeTaskRecord(input: WriteTaskRecordInput): Promise<void>;
}
