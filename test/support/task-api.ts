/**
 * The task API as integration tests drive it: read a task, wait for an item or the end, decide, read
 * the trace. One set of helpers over a backend's base URL, so each test file states only its scenario.
 */
import assert from 'node:assert/strict';
import { call, eventually } from './http';

/** States after which nothing more happens to a task. */
export const ENDED_STATES = ['done', 'failed', 'rejected', 'cancelled', 'timed_out'];

/** Helpers over the API at `base()` (a function: the stack starts after the helpers are made). */
export function taskApi(base: () => string, opts: { actor?: string; itemTimeoutMs?: number } = {}) {
  const actor = opts.actor ?? 'bob';
  const task = async (id: string): Promise<any> => {
    const res = await call(base(), 'GET', `/v1/tasks/${id}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body;
  };
  return {
    task,
    /** The first pending item of one of `kinds` (or of any kind when the task ends first, so the assertion names it). */
    async nextItem(id: string, kinds: string[]): Promise<any> {
      const t = await eventually(
        () => task(id),
        (v) => v.items.some((i: any) => i.status === 'pending' && kinds.includes(i.kind)) || ENDED_STATES.includes(v.state),
        `a pending ${kinds.join('/')} on ${id}`,
        opts.itemTimeoutMs ?? 90_000,
      );
      const item = t.items.find((i: any) => i.status === 'pending' && kinds.includes(i.kind));
      assert.ok(item, `no pending ${kinds.join('/')}; task is ${t.state}: ${t.result}; items: ${JSON.stringify(t.items.map((i: any) => i.title))}`);
      return item;
    },
    async decide(id: string, item: any, body: Record<string, unknown>): Promise<void> {
      const res = await call(base(), 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { actor, ...body });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    },
    async ended(id: string): Promise<any> {
      return eventually(() => task(id), (t) => ENDED_STATES.includes(t.state), `${id} to end`, 60_000);
    },
    async trace(id: string): Promise<any[]> {
      return (await call(base(), 'GET', `/v1/tasks/${id}/trace`)).body.entries;
    },
    /** Cancels each task of `ids` that is still open and waits for it to end (a failed test leaves none behind). */
    async cancelOpen(ids: string[]): Promise<void> {
      for (const id of ids) {
        if (!ENDED_STATES.includes((await task(id)).state)) {
          await call(base(), 'POST', `/v1/tasks/${id}/cancel`, { actor: 'test', reason: 'test over' });
          await eventually(() => task(id), (t) => ENDED_STATES.includes(t.state), `${id} to end`, 60_000);
        }
      }
    },
  };
}
