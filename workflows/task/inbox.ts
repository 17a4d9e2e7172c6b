/**
 * Inbox items: raised by the main line, settled by a human's decision, awaited by the main line.
 */
import type { InboxItem, ItemKind, Resolution, TaskState } from '../../domain/task';
import { notify } from './notify';
import { parkedWait } from './sandbox';
import { dueAt } from './sla';
import type { TaskRun } from './state';
import { setState, trace } from './visibility';

/** Settled items kept in state for the task view; pending ones are always kept. */
const SETTLED_ITEMS_KEEP = 50;

/** Opens an inbox item (due by the team's SLA for its kind, if any), moves the task to the state that waits on it, and tells the team. */
export function raise(t: TaskRun, kind: ItemKind, title: string, waiting: TaskState, detail: Record<string, unknown>): InboxItem {
  const s = t.s;
  s.item_seq += 1;
  const item: InboxItem = {
    item_id: `${kind}-${s.item_seq}`,
    kind,
    title,
    created_at: new Date().toISOString(),
    status: 'pending',
    detail: { ...detail, usage: { ...s.usage } },
  };
  const due = dueAt(t, kind, item.created_at);
  if (due !== undefined) item.due_at = due;
  s.items.push(item);
  trace(t, 'item_opened', `${kind} ${item.item_id}: ${title}`, { item_id: item.item_id, kind, ...(due === undefined ? {} : { due_at: due }) });
  setState(t, waiting, true);
  notify(t, 'item_opened', item);
  return item;
}

/** Waits until a human settles the item; cancellation of the task interrupts the wait. */
export async function waitFor(t: TaskRun, item: InboxItem): Promise<Resolution> {
  await parkedWait(t, () => item.status !== 'pending');
  if (!item.resolution) throw new Error(`item ${item.item_id} closed without a resolution`);
  return item.resolution;
}

/** Records a human's resolution of an item (it counts as activity for the idle guard) and drops the oldest settled items. */
export function settle(t: TaskRun, item: InboxItem, resolution: Resolution): void {
  item.status = 'resolved';
  item.resolution = resolution;
  t.s.idle_since = resolution.at;
  const settled = t.s.items.filter((i) => i.status !== 'pending');
  if (settled.length > SETTLED_ITEMS_KEEP) {
    const drop = new Set(settled.slice(0, settled.length - SETTLED_ITEMS_KEEP).map((i) => i.item_id));
    t.s.items = t.s.items.filter((i) => !drop.has(i.item_id) || i.item_id === t.s.review_item);
  }
}
