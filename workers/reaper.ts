/**
 * Removes sandboxes whose task is no longer open (after a crash, a kill -9 or a deploy).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Logger } from './log';

/** What the reaper needs: the sandboxes present, and a way to remove one with its working copy. */
export interface ReaperDeps {
  client: Client;
  list(): Promise<string[]>;
  remove(taskId: string): Promise<void>;
  log: Logger;
}

/** One pass: every sandbox whose workflow is closed or unknown is removed; returns the ids removed. */
export async function reapOrphanSandboxes(deps: ReaperDeps): Promise<string[]> {
  const removed: string[] = [];
  for (const id of await deps.list()) {
    let open: boolean;
    try {
      const d = await deps.client.workflow.getHandle(id).describe();
      open = d.status.name === 'RUNNING';
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) {
        deps.log.warn('reaper could not describe task; keeping its sandbox', { task_id: id, error: err });
        continue;
      }
      open = false;
    }
    if (open) continue;
    await deps.remove(id);
    removed.push(id);
    deps.log.info('reaped orphan sandbox', { task_id: id });
  }
  return removed;
}
