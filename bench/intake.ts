/**
 * A burst of task starts through `POST /v1/tasks` with a fixed number in flight: the intake figure the core and the
 * PostgreSQL benchmarks share.
 */
import { call } from '../test/support/http';

/** What a burst did: the ids started, each start's latency, the refused ones, and the burst's wall-clock seconds. */
export interface Burst {
  ids: string[];
  latencies: number[];
  failures: { status: number; body: unknown }[];
  seconds: number;
}

/** Posts `body` `tasks` times, `inFlight` at once; a refused start is counted, not retried. */
export async function startBurst(base: string, body: unknown, tasks: number, inFlight: number): Promise<Burst> {
  const burst: Burst = { ids: [], latencies: [], failures: [], seconds: 0 };
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < tasks) {
        next += 1;
        const s = performance.now();
        const res = await call(base, 'POST', '/v1/tasks', body);
        burst.latencies.push(performance.now() - s);
        if (res.status === 202) burst.ids.push(res.body.task_id);
        else burst.failures.push({ status: res.status, body: res.body });
      }
    }),
  );
  burst.seconds = (performance.now() - t0) / 1000;
  return burst;
}
