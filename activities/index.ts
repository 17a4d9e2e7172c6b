/**
 * The worker's activities, built from their dependencies: the sandbox driver,
 * the artifact store and the data directory holding working copies.
 */
import path from 'node:path';
import type { PriceTable } from '../domain/prices';
import { intersectEgress, plannerAllowlist } from '../domain/egress';
import { preview } from '../domain/rules';
import { TRACE_ARCHIVE } from '../domain/trace-archive';
import { createLogger, type Logger } from '../workers/log';
import { isSafeName, type ArtifactStorage } from './artifacts/store';
import { checkpointAfter, ensureAtCheckpoint, restoreCheckpoint, saveCheckpoint } from './checkpoint';
import { detachHead, fetchBranch, hasObject, pinBranch } from './git/checkpoint-chain';
import { guardAll } from './failure-mapping';
import { parseRepoPolicy, POLICY_FILE } from './repo-policy-file';
import { writeTaskRecord } from './records/task-record';
import { runOnce } from './run-once';
import { activityScope, whileBeating } from './scope';
import { activityFailure } from './failures';
import { createAgentActivities } from './llm/agent';
import { createNotifyActivities, type NotifyDeps } from './notify/webhooks';
import { createPullRequestActivities } from './github/activities';
import type { ForgeChecks } from '../domain/checks';
import type { ForgePullRequests } from '../domain/forge';
import type { ForgeIssues } from '../domain/forge-mirror';
import type { ForgeMerges } from '../domain/merge';
import type { ModelClient, ModelProvider } from './llm/client';
import {
  branchTip,
  changedPaths,
  clone,
  commitTree,
  defaultRepoRules,
  deleteRemoteBranch,
  diff,
  headCommit,
  isWorkingCopy,
  push,
  readCommit,
  readTextAt,
  removeWorkingCopy,
  snapshotTree,
  updateBranch,
  type RemoteOptions,
} from './git/workspace';
import type { EgressGrant } from './egress/types';
import type { SandboxDriver, SandboxHandle } from './sandbox/driver';
import { provisionSetup, saveSetup, type SetupCacheOptions } from './setup-phase';
import type { Activities, ProvisionRestore, WorkerPlacement } from './types';
import type { SandboxHolds } from '../workers/capacity';

/** What the activities need from the worker. */
export interface ActivityDeps {
  sandbox: SandboxDriver;
  artifacts: ArtifactStorage;
  /** Root of the worker's state; working copies live in `<dataDir>/workspaces/<task_id>`. */
  dataDir: string;
  log?: Logger;
  /** Model clients of the LLM planner; built from `modelEnv` (GEMINI_API_KEY, OPENAI_BASE_URL, …) when absent. */
  models?: Partial<Record<ModelProvider, ModelClient>>;
  /** Environment the model clients and the price table are configured from (default: the process's). */
  modelEnv?: NodeJS.ProcessEnv;
  /** Model prices (default: built-in and `modelEnv.MODEL_PRICES`). */
  prices?: PriceTable;
  /**
   * Which repositories may be reached, the worker's git credentials file and its own credentials (GitHub's tokens
   * for GITHUB_GIT_BASE); default rules: see `defaultRepoRules`; `dataDir` is always refused.
   */
  repos?: Pick<RemoteOptions, 'rules' | 'credentialsFile' | 'credentials'>;
  /** The operator's egress ceiling (EGRESS_ALLOW): no command reaches anything outside it, whatever a workflow asks. Default: nothing. */
  egressCeiling?: string[];
  /** Where setup caches live and their bounds; null turns caching off. Default: `<dataDir>/setup-cache`, see {@link DEFAULT_SETUP_CACHE_MB}. */
  setupCache?: SetupCacheOptions | null;
  /** The teams' webhooks and their secrets (default: none, so nothing is delivered). */
  notify?: NotifyDeps;
  /**
   * This worker's own queue and its limits, handed to the workflow at provisioning so the task's sandbox work comes
   * back here (see `workflows/task/sandbox.ts`); absent: the workflow keeps all work on the shared queue.
   */
  placement?: WorkerPlacement;
  /** Which tasks hold a sandbox on this worker, for its admission gate (see `workers/capacity.ts`); default: not counted. */
  holds?: SandboxHolds;
  /** The forge's pull-request, issue, merge and checks sides (see `github/pulls.ts`, `github/issues.ts`, `github/merge.ts`, `github/checks.ts`); default: none, so the forge activities refuse. */
  forge?: (ForgePullRequests & ForgeIssues & ForgeMerges & ForgeChecks) | null;
}

/** Default bounds of the setup cache: one entry, and all of them, in MiB. */
export const DEFAULT_SETUP_CACHE_MB = { entry: 2_048, total: 20_480 };

/** Bytes of a step's combined output kept (the tail: that is where failures show). */
export const STEP_OUTPUT_MAX_BYTES = 1024 * 1024;
const STEP_PREVIEW_CHARS = 2_000;
const DIFF_PREVIEW_CHARS = 8_000;
const BRANCH_PREFIX = 'agent/';

/** The branch a task's output is pushed to. */
export function branchFor(taskId: string): string {
  return `${BRANCH_PREFIX}${taskId}`;
}

/** Build the activities; no side effects until one is called. */
export function createActivities(deps: ActivityDeps): Activities {
  const log = deps.log ?? createLogger({ component: 'activities' });
  const workspaces = path.resolve(deps.dataDir, 'workspaces');

  /** The task id as a directory, sandbox and artifact name; ids that are not one path segment are refused. */
  const keyOf = (taskId: string): string => {
    if (!isSafeName(taskId)) {
      throw activityFailure('InvalidInput', `task id ${JSON.stringify(taskId.slice(0, 200))} is not usable as a directory name`);
    }
    return taskId;
  };
  const workspaceOf = (taskId: string): string => path.join(workspaces, keyOf(taskId));
  const rules = deps.repos?.rules ?? defaultRepoRules();
  const ceiling = deps.egressCeiling ?? [];
  const setupCache: SetupCacheOptions | null =
    deps.setupCache === undefined
      ? { root: path.resolve(deps.dataDir, 'setup-cache'), maxBytes: DEFAULT_SETUP_CACHE_MB.entry * 2 ** 20, maxTotalBytes: DEFAULT_SETUP_CACHE_MB.total * 2 ** 20 }
      : deps.setupCache;
  /** A workflow's grant, cut to this worker's ceiling: a history cannot widen what the operator allows. */
  const withinCeiling = (g: EgressGrant | undefined): EgressGrant | undefined => (g === undefined ? undefined : { allow: intersectEgress(ceiling, g.allow), step: g.step });
  /** How this activity reaches a task's repository: the rules checked again here, since a workflow can be started without the API. */
  const remote = (): RemoteOptions => ({
    rules: { ...rules, forbidden: [...rules.forbidden, path.resolve(deps.dataDir)] },
    credentialsFile: deps.repos?.credentialsFile,
    credentials: deps.repos?.credentials,
    signal: activityScope().signal,
  });

  /** The task's working copy, refusing a handle that points anywhere else or a copy that has vanished. */
  const workingCopy = async (taskId: string, handle: SandboxHandle): Promise<string> => {
    const dir = workspaceOf(taskId);
    if (path.resolve(handle.hostWorkdir) !== dir || !(await isWorkingCopy(dir))) {
      throw activityFailure('SandboxLost', `the working copy of task ${taskId} is gone from this worker's data directory`);
    }
    return dir;
  };

  /** Removes the task's sandbox (the one `handle` names, else the one named for the task) and its working copy. */
  const removeTaskSandbox = async (taskId: string, dir: string, handle?: SandboxHandle | null): Promise<void> => {
    await deps.sandbox.teardown(handle ?? { id: taskId, driver: deps.sandbox.name, isolation: deps.sandbox.isolation, workdir: dir, hostWorkdir: dir });
    await removeWorkingCopy(dir);
  };

  /**
   * Brings a fresh clone to where the task was: its own base commit (the base branch may have moved on), the
   * commit it last pushed as its branch, and the checkpoint tree from the task's bundle in the artifact store.
   */
  const restoreCopy = async (dir: string, repo: string, baseBranch: string, restore: ProvisionRestore, taskId: string): Promise<void> => {
    if (restore.branch !== null) {
      const tip = await fetchBranch(dir, repo, restore.branch, remote());
      // Only what the task itself pushed is built on: a commit someone else added to the branch since makes the next push
      // fail as not a fast-forward, as it would have on the worker that pushed.
      if (restore.commit !== null && tip !== restore.commit) await pinBranch(dir, restore.branch, (await hasObject(dir, restore.commit, 'commit')) ? restore.commit : null);
    }
    if (!(await hasObject(dir, restore.base_commit, 'commit'))) {
      throw activityFailure('CheckpointLost', `base commit ${restore.base_commit} is on neither ${baseBranch} nor the task's branch of its repository any more`);
    }
    await detachHead(dir, restore.base_commit);
    await restoreCheckpoint(deps.artifacts, taskId, dir, restore.checkpoint, activityScope().signal);
  };

  const agent = createAgentActivities({
    sandbox: deps.sandbox,
    artifacts: deps.artifacts,
    workingCopy,
    models: deps.models,
    env: deps.modelEnv,
    prices: deps.prices,
    log,
    scope: activityScope,
    withinCeiling,
  });

  const activities: Activities = {
    ...agent,
    ...createNotifyActivities(deps.notify ?? { access: { teams: {} }, secrets: {}, publicUrl: null, log }),
    ...createPullRequestActivities(deps.forge ?? null, deps.forge ?? null, deps.forge ?? null, deps.forge ?? null),
    async provisionSandbox(input) {
      const key = keyOf(input.task_id);
      const dir = workspaceOf(key);
      const restore = input.restore;
      if (restore) {
        // Whatever this worker still has of the task (a sandbox left running by a worker counted as lost, a copy a
        // failed attempt half made) is older than the checkpoint and may hold the model's processes: it goes first.
        await removeTaskSandbox(key, dir);
      }
      const fresh = !(await isWorkingCopy(dir));
      if (!fresh) {
        log.info('working copy re-attached', { task_id: key });
      } else {
        await clone(input.repo, input.base_branch, dir, remote());
        log.info('working copy cloned', { task_id: key, base_branch: input.base_branch });
      }
      if (restore) {
        await restoreCopy(dir, input.repo, input.base_branch, restore, key);
        log.info('working copy restored from checkpoint', { task_id: key, checkpoint: restore.checkpoint });
      }
      const defer = input.defer_sandbox === true && !restore;
      // A deferred copy is read and removed at once: it gets no disk of its own.
      if (!defer) await deps.sandbox.attachWorkdir?.(key, dir);
      const base_commit = await headCommit(dir);
      // Policy, AGENTS.md and the setup script come from the base commit: nothing a step writes can change them.
      const repo_policy = parseRepoPolicy(await readTextAt(dir, base_commit, POLICY_FILE));
      const has_agents_md = (await readTextAt(dir, base_commit, 'AGENTS.md')) !== null;
      const checkpoint = restore ? restore.checkpoint : await snapshotTree(dir);
      const setup = await provisionSetup({ repo: input.repo, baseBranch: input.base_branch, dir, baseCommit: base_commit, fresh, requested: input.setup, repoPolicy: repo_policy, ceiling, cache: setupCache });
      if (setup?.cache?.hit) log.info('setup cache restored', { task_id: key, key: setup.cache.key, files: setup.cache.files, bytes: setup.cache.bytes });
      if (setup?.cache?.refused) log.error('a cached setup was refused and removed: someone may have tampered with the cache', { task_id: key, key: setup.cache.key, refused: setup.cache.refused });
      if (defer) {
        // Nothing will run before a human decides: the checkpoint goes where any worker finds it, and the copy goes.
        const scope = activityScope();
        await whileBeating(scope.heartbeat, () => saveCheckpoint(deps.artifacts, key, dir, checkpoint, { signal: scope.signal, always: true }));
        await removeWorkingCopy(dir);
        log.info('sandbox deferred', { task_id: key, checkpoint });
        const sandbox = { id: key, driver: deps.sandbox.name, isolation: deps.sandbox.isolation, workdir: '', hostWorkdir: dir };
        return { sandbox, base_commit, checkpoint, repo_policy, has_agents_md, egress_ceiling: ceiling, setup, deferred: true, ...(deps.placement ? { worker: deps.placement } : {}) };
      }
      const plannerAllow = plannerAllowlist(ceiling, input.egress_allowlist ?? [], repo_policy?.egress_allowlist);
      // A sandbox gets a network at once when a phase it will run may reach something; a later grant adds one.
      const setupAllow = setup && !setup.cache?.hit ? setup.allow : [];
      const deadline = input.deadline_at ? Date.parse(input.deadline_at) : NaN;
      const sandbox = await deps.sandbox.provision({
        id: key,
        hostWorkdir: dir,
        egressAllowlist: [...new Set([...setupAllow, ...plannerAllow])],
        activeDeadlineSeconds: Number.isFinite(deadline) ? Math.max(60, Math.ceil((deadline - Date.now()) / 1000)) : undefined,
      });
      return { sandbox, base_commit, checkpoint, repo_policy, has_agents_md, egress_ceiling: ceiling, setup, ...(deps.placement ? { worker: deps.placement } : {}) };
    },

    async admitSandbox(input) {
      const key = keyOf(input.task_id);
      if (deps.placement === undefined) throw activityFailure('InvalidInput', 'this worker has no queue of its own to admit a sandbox to');
      deps.holds?.hold(key);
      log.info('sandbox admitted', { task_id: key, worker: deps.placement.id });
      return deps.placement;
    },

    async releaseSandbox(input) {
      const key = keyOf(input.task_id);
      const scope = activityScope();
      if (!(await isWorkingCopy(workspaceOf(key)))) {
        // An earlier attempt got as far as removing the copy, so it had saved the checkpoint: finish its teardown.
        await deps.sandbox.teardown(input.sandbox);
        deps.holds?.drop(key);
        log.info('sandbox released', { task_id: key, checkpoint: input.checkpoint });
        return;
      }
      const dir = await workingCopy(key, input.sandbox);
      await whileBeating(scope.heartbeat, async () => {
        // Nothing left running may change the copy after this; what the task goes on from is its checkpoint, kept where any worker finds it.
        await deps.sandbox.killAll(input.sandbox);
        await saveCheckpoint(deps.artifacts, key, dir, input.checkpoint, { signal: scope.signal, always: true });
        await deps.sandbox.teardown(input.sandbox);
        // The copy's disk went with the sandbox; whichever worker goes on clones again and restores the checkpoint.
        await removeWorkingCopy(dir);
      });
      deps.holds?.drop(key);
      log.info('sandbox released', { task_id: key, checkpoint: input.checkpoint });
    },

    async saveSetupCache(input) {
      const key = keyOf(input.task_id);
      const dir = await workingCopy(key, input.sandbox);
      const scope = activityScope();
      // Nothing setup left running may change the files while they are packed.
      await whileBeating(scope.heartbeat, () => deps.sandbox.killAll(input.sandbox));
      const saved = await whileBeating(scope.heartbeat, () =>
        deps.sandbox.whileFrozen ? deps.sandbox.whileFrozen(input.sandbox, () => saveSetup(setupCache, input.key, dir)) : saveSetup(setupCache, input.key, dir),
      );
      log.info('setup cache', { task_id: key, key: input.key, ...saved });
      return saved;
    },

    async runStep(input) {
      const key = keyOf(input.task_id);
      const dir = await workingCopy(key, input.sandbox);
      const scope = activityScope();
      // A retry after the command ended (the worker died while writing its log) is answered from the record.
      const { value: res, replayed } = await runOnce(deps.artifacts, key, scope.identity, async () => {
        // Git work on a large working copy can outlast the heartbeat timeout, so beat while it runs too.
        const found = await whileBeating(scope.heartbeat, () => ensureAtCheckpoint(deps.sandbox, input.sandbox, dir, input.checkpoint, { attempt: scope.attempt, signal: scope.signal }));
        if (found !== null) {
          log.warn('working copy restored to checkpoint before step', {
            task_id: key,
            round: input.round,
            index: input.index,
            attempt: scope.attempt,
            found,
            checkpoint: input.checkpoint,
          });
        }
        return deps.sandbox.exec(input.sandbox, input.command, {
          timeoutMs: input.timeout_seconds * 1000,
          maxOutputBytes: STEP_OUTPUT_MAX_BYTES,
          env: input.env,
          signal: scope.signal,
          onTick: scope.heartbeat,
          egress: withinCeiling(input.egress),
        });
      });
      if (replayed) log.warn('step had already run in an earlier attempt; its recorded result is used', { task_id: key, round: input.round, index: input.index, attempt: scope.attempt });
      // A recipe step ends with its processes: nothing it left running can change the tree after the snapshot below.
      await whileBeating(scope.heartbeat, () => deps.sandbox.killAll(input.sandbox));
      const text = res.outputTruncatedBytes > 0 ? `[… ${res.outputTruncatedBytes} earlier bytes of output cut …]\n${res.output}` : res.output;
      const { output, checkpoint, changed_paths } = await whileBeating(scope.heartbeat, async () => {
        const ref = await deps.artifacts.put(key, `step-${input.round}-${input.index}.log`, text);
        const after = await checkpointAfter(deps.sandbox, input.sandbox, dir, scope.signal);
        const paths = after === input.checkpoint ? [] : await changedPaths(dir, input.checkpoint, after, { signal: scope.signal });
        if (after !== input.checkpoint) await saveCheckpoint(deps.artifacts, key, dir, after, { signal: scope.signal });
        return { output: ref, checkpoint: after, changed_paths: paths };
      });
      log.info('step finished', {
        task_id: key,
        round: input.round,
        index: input.index,
        exit_code: res.exitCode,
        timed_out: res.timedOut,
        duration_ms: res.durationMs,
        changed_paths: changed_paths.length,
      });
      return {
        exit_code: res.exitCode,
        timed_out: res.timedOut,
        duration_ms: res.durationMs,
        output_preview: preview(text, STEP_PREVIEW_CHARS),
        output,
        checkpoint,
        changed_paths,
        ...(res.egress ? { egress: res.egress } : {}),
      };
    },

    async diffCheckpoints(input) {
      const key = keyOf(input.task_id);
      const dir = await workingCopy(key, input.sandbox);
      const d = await diff(dir, input.from, input.to, input.paths);
      const ref = await deps.artifacts.put(key, `${input.name}.diff`, d.patch);
      return { stat: d.stat, preview: preview(d.patch, DIFF_PREVIEW_CHARS), diff: ref, files_changed: d.filesChanged };
    },

    async publishOutput(input) {
      const key = keyOf(input.task_id);
      const dir = await workingCopy(key, input.sandbox);
      const branch = branchFor(key);
      // What ships is the last checkpoint a gate saw, never a fresh look at a working copy that may have moved on.
      const tree = input.tree;
      const tip = await branchTip(dir, branch);
      const tipInfo = tip === null ? null : await readCommit(dir, tip);

      let commit: string | null;
      let changed: boolean;
      if (tip !== null && tipInfo!.tree === tree && isRoundCommit(tipInfo!.message, key, input.round)) {
        // An earlier attempt of this very publish got as far as the commit; pushing it again is all that is left.
        commit = tip;
        changed = true;
        log.info('reusing commit of an earlier publish attempt', { task_id: key, round: input.round, commit });
      } else {
        const parentTree = tipInfo?.tree ?? (await readCommit(dir, input.base_commit)).tree;
        if (parentTree === tree) {
          commit = tip;
          changed = false;
        } else {
          const message = `${input.message.trimEnd() || 'Agent output'}\n\nAgent-Task: ${key}\nAgent-Round: ${input.round}\n`;
          commit = await commitTree(dir, message, tree, tip ?? input.base_commit);
          await updateBranch(dir, branch, commit, tip);
          changed = true;
        }
      }

      // Pushed even when unchanged: an earlier round may have committed and then died before its push.
      if (commit !== null) {
        const outcome = await push(dir, input.repo, commit, branch, remote());
        log.info('output published', { task_id: key, round: input.round, branch, commit, changed, push: outcome });
      } else {
        log.info('nothing to publish', { task_id: key, round: input.round });
      }
      if (commit === null) return { changed, branch, commit, stat: '', diff_preview: '', diff: null, files_changed: 0 };
      const d = await diff(dir, input.base_commit, commit);
      const ref = await deps.artifacts.put(key, `publish-${input.round}.diff`, d.patch);
      return {
        changed,
        branch,
        commit,
        stat: d.stat,
        diff_preview: preview(d.patch, DIFF_PREVIEW_CHARS),
        diff: ref,
        files_changed: d.filesChanged,
      };
    },

    async deleteBranch(input) {
      // A workflow bug must never be able to delete a human's branch.
      if (!input.branch.startsWith(BRANCH_PREFIX)) {
        throw activityFailure('InvalidInput', `refusing to delete ${JSON.stringify(input.branch)}: only ${BRANCH_PREFIX}* branches are the agent's`);
      }
      await deleteRemoteBranch(input.repo, input.branch, remote());
      log.info('branch deleted', { branch: input.branch });
    },

    async teardownSandbox(input) {
      // Nothing can exist for an id we would have refused to create.
      if (!isSafeName(input.task_id)) return;
      await removeTaskSandbox(input.task_id, workspaceOf(input.task_id), input.sandbox);
      deps.holds?.drop(input.task_id);
      log.info('sandbox and working copy removed', { task_id: input.task_id });
    },

    async archiveTrace(input) {
      const key = keyOf(input.task_id);
      const archived = await deps.artifacts.completeLines(key, TRACE_ARCHIVE);
      // An earlier attempt may have appended some or all of these before its worker died.
      const fresh = input.entries.slice(Math.max(0, archived - input.first_index));
      if (archived < input.first_index) {
        log.warn('trace archive is missing entries', { task_id: key, archived, first_index: input.first_index });
      }
      if (fresh.length === 0) return;
      await deps.artifacts.append(key, TRACE_ARCHIVE, fresh.map((e) => `${JSON.stringify(e)}\n`).join(''));
    },

    async writeTaskRecord(input) {
      await writeTaskRecord(deps.artifacts, { ...input, task_id: keyOf(input.task_id) }, log);
    },
  };

  return guardAll(activities);
}

function isRoundCommit(message: string, taskId: string, round: number): boolean {
  const lines = message.split('\n').map((l) => l.trim());
  return lines.includes(`Agent-Task: ${taskId}`) && lines.includes(`Agent-Round: ${round}`);
}
