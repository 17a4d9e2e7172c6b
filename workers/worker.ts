/**
 * Builds the task worker: the workflow bundle plus activities wired to their dependencies.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  bundleWorkflowCode,
  NativeConnection,
  Worker,
  type ActivitySlotInfo,
  type CustomSlotSupplier,
  type WorkerTuner,
  type WorkflowBundle,
  type WorkflowBundleOption,
} from '@temporalio/worker';
import type { Activities } from '../activities/types';

/** Path of the workflow bundle's entry point, resolved next to this file (source or compiled). */
export const WORKFLOWS_PATH = require.resolve('../workflows');

/** Where `npm run build` writes the workflow bundle (`dist/workflow-bundle.js`). */
export const PREBUILT_BUNDLE_PATH = path.join(__dirname, '..', 'workflow-bundle.js');

/**
 * Modules the workflow context loads once for all its workflows, before any runs (shared and frozen): the shell
 * parser, which every workflow that reads a command would otherwise load into its own module cache.
 */
export const SHARED_WORKFLOW_MODULES = [require.resolve('../domain/shell-preload')];

/** Bundles the workflow code (webpack, seconds of CPU and a heap that never shrinks back). */
export async function buildWorkflowBundle(): Promise<WorkflowBundle> {
  return bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, preloadModules: SHARED_WORKFLOW_MODULES, logger: quietBundlerLogger });
}

/**
 * The workflow bundle for a worker: the one the build wrote when present (a worker
 * then never loads webpack, which saves well over 100 MB of resident memory), else built now.
 */
export async function bundleWorkflows(): Promise<WorkflowBundleOption> {
  if (fs.existsSync(PREBUILT_BUNDLE_PATH)) return { codePath: PREBUILT_BUNDLE_PATH };
  return buildWorkflowBundle();
}

/** Dependencies of a task worker. */
export interface WorkerDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  activities: Activities;
  /** Hands out the worker's activity slots (default: the SDK's fixed number). */
  activitySlots?: CustomSlotSupplier<ActivitySlotInfo>;
  /** Unset, the worker runs activities only. */
  workflowBundle?: WorkflowBundleOption;
  /** Workflows kept in memory; parked tasks beyond it replay from history when touched. */
  maxCachedWorkflows?: number;
  identity?: string;
}

/** Creates (but does not run) a worker polling `taskQueue`. */
export async function createWorker(deps: WorkerDeps): Promise<Worker> {
  return Worker.create({
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue,
    ...(deps.workflowBundle ? { workflowBundle: deps.workflowBundle } : {}),
    ...(deps.activitySlots ? { tuner: tunerWith(deps.activitySlots) } : {}),
    activities: deps.activities,
    maxCachedWorkflows: deps.maxCachedWorkflows ?? 250,
    // Steps heartbeat; a shutdown waits this long for running steps before Temporal retries them elsewhere.
    shutdownGraceTime: '5 seconds',
    ...(deps.identity ? { identity: deps.identity } : {}),
  });
}

/** Activity slots a worker may hold while its other kinds of slot keep the SDK's default number. */
const DEFAULT_SLOTS = 100;

function tunerWith(activities: CustomSlotSupplier<ActivitySlotInfo>): WorkerTuner {
  const fixed = { type: 'fixed-size', numSlots: DEFAULT_SLOTS } as const;
  return { workflowTaskSlotSupplier: fixed, activityTaskSlotSupplier: activities, localActivityTaskSlotSupplier: fixed, nexusTaskSlotSupplier: fixed };
}

/** The bundler is chatty at info level; keep its warnings and errors only. */
const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string, meta?: Record<string, unknown>) => console.warn(message, meta ?? ''),
  error: (message: string, meta?: Record<string, unknown>) => console.error(message, meta ?? ''),
};

/** How often a supervised worker's state is looked at: the SDK can mark a worker FAILED before `run()` settles. */
const WORKER_STATE_CHECK_MS = 1_000;

/** Thrown (as the `failed` value) when a worker stops without being asked to. */
export class WorkerStoppedError extends Error {
  override readonly name = 'WorkerStoppedError';
}

/** A running worker: `done` settles when its run loop ends; `failed` resolves once, only if it ended or failed on its own. */
export interface SupervisedWorker {
  done: Promise<void>;
  failed: Promise<Error>;
  /** Stops the worker and waits for its run loop, unless it has already failed (a failed loop may never settle). */
  stop(): Promise<void>;
}

/**
 * Runs `worker` and reports the end of its run loop that nobody asked for (a rejection, a FAILED state, or a quiet stop).
 * `stopping` tells a requested stop apart: the SDK shuts workers down on SIGTERM itself, before `stop()` is reached.
 */
export function superviseWorker(worker: Worker, opts: { stopping?: () => boolean } = {}): SupervisedWorker {
  let stopped = false;
  const stopping = (): boolean => stopped || (opts.stopping?.() ?? false);
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  let hasFailed = false;
  const report = (err: Error): void => {
    if (stopping() || hasFailed) return;
    hasFailed = true;
    fail(err);
  };
  const done = worker.run().then(
    () => report(new WorkerStoppedError('the worker stopped without being asked to')),
    (err: unknown) => report(err instanceof Error ? err : new WorkerStoppedError(String(err))),
  );
  const timer = setInterval(() => {
    if (worker.getState() === 'FAILED') report(new WorkerStoppedError('the worker is in state FAILED'));
  }, WORKER_STATE_CHECK_MS);
  timer.unref();
  void done.finally(() => clearInterval(timer));
  return {
    done,
    failed,
    async stop() {
      stopped = true;
      clearInterval(timer);
      // A failed run loop may never settle: the SDK does not release a worker that failed.
      if (hasFailed || worker.getState() === 'FAILED') return;
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}
