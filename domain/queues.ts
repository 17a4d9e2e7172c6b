/**
 * The task queues a deployment uses, named from its shared queue (`TEMPORAL_TASK_QUEUE`): workflows and work that
 * needs no particular worker go to the shared queue; admission of a sandbox to the admission queue, which a worker
 * polls only while it has room; a sandbox's work to the queue of the worker holding it.
 */

/** Where a task asks for a sandbox: every worker with room polls it, in the tasks' priority order. */
export function admissionQueue(taskQueue: string): string {
  return `${taskQueue}.admission`;
}

/** The queue only worker `workerId` polls: the work of the sandboxes it holds. */
export function workerQueue(taskQueue: string, workerId: string): string {
  return `${taskQueue}@${workerId}`;
}
