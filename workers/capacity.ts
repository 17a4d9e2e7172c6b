/**
 * How many sandboxes a worker holds, and the gate that keeps it under WORKER_MAX_SANDBOXES: the worker polls its
 * admission queue only while it has room, so tasks beyond the cap wait in Temporal's queue (in priority order)
 * rather than on a worker, and nothing is ever evicted to make room.
 */
import type { ActivitySlotInfo, CustomSlotSupplier, SlotPermit } from '@temporalio/worker';

/** What the activities tell the gate: a task holds a sandbox here from admission until teardown or release. */
export interface SandboxHolds {
  hold(taskId: string): void;
  drop(taskId: string): void;
}

export class SandboxCapacity implements SandboxHolds {
  private readonly held = new Set<string>();
  /** Admission slots the SDK reserved to poll with, or is running an admission in. */
  private reserved = 0;
  private waiters: (() => void)[] = [];
  /** The most sandboxes held at once since the worker started: what the cap has actually allowed. */
  private mostHeld = 0;

  /** `max` 0: no cap. `holding`: tasks whose working copies this worker has already (after a restart). */
  constructor(
    readonly max: number,
    holding: Iterable<string> = [],
  ) {
    for (const id of holding) this.held.add(id);
    this.mostHeld = this.held.size;
  }

  get live(): number {
    return this.held.size;
  }

  get peak(): number {
    return this.mostHeld;
  }

  /** The tasks holding a sandbox here. */
  holding(): string[] {
    return [...this.held];
  }

  hold(taskId: string): void {
    this.held.add(taskId);
    this.mostHeld = Math.max(this.mostHeld, this.held.size);
  }

  drop(taskId: string): void {
    if (this.held.delete(taskId)) this.wake();
  }

  /** Room for one more admission: the sandboxes held and the admissions under way stay within the cap. */
  private hasRoom(): boolean {
    return this.max === 0 || this.held.size + this.reserved < this.max;
  }

  private wake(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }

  /** The admission queue's activity slots: one is handed out only while the worker has room for a sandbox. */
  slotSupplier(): CustomSlotSupplier<ActivitySlotInfo> {
    const permit: SlotPermit = {};
    return {
      type: 'custom',
      reserveSlot: async (_ctx, signal) => {
        while (!this.hasRoom()) {
          await new Promise<void>((resolve, reject) => {
            const onAbort = (): void => reject(Object.assign(new Error('slot reservation aborted'), { name: 'AbortError' }));
            if (signal.aborted) return onAbort();
            signal.addEventListener('abort', onAbort, { once: true });
            this.waiters.push(() => {
              signal.removeEventListener('abort', onAbort);
              resolve();
            });
          });
        }
        this.reserved++;
        return permit;
      },
      tryReserveSlot: () => {
        if (!this.hasRoom()) return null;
        this.reserved++;
        return permit;
      },
      markSlotUsed: () => undefined,
      releaseSlot: () => {
        this.reserved--;
        this.wake();
      },
    };
  }
}
