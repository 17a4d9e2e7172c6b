/**
 * LLM planner benchmark: the orchestration overhead of one agent step (a model-call activity
 * plus a tool-call activity and the workflow tasks between them) with a loopback model that
 * answers at once and a near no-op command, on the process driver; then steps per second for
 * concurrent tasks. Real dev server, real worker, real @google/genai client.
 *
 *   npm run bench:agent                         # 100 steps alone, then 20 tasks × 50 steps
 *   BENCH_STEPS=50 BENCH_TASKS=10 npm run bench:agent
 */
import os from 'node:os';
import path from 'node:path';
import { startFakeGemini, type GeminiTurn } from '../test/support/fake-gemini';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const STEPS = Number(process.env.BENCH_STEPS ?? 100);
const TASKS = Number(process.env.BENCH_TASKS ?? 20);
const STEPS_CONCURRENT = Number(process.env.BENCH_STEPS_CONCURRENT ?? 50);

/** A turn that answers from the conversation alone: plan first, then `steps` cheap commands, then finish. */
function turnFor(steps: number): GeminiTurn {
  return (body: any) => {
    const calls = (body.contents as any[]).filter((c) => c.role === 'model').flatMap((c) => c.parts.filter((p: any) => p.functionCall)).length;
    const replies = (body.contents as any[]).filter((c) => c.role === 'model').length;
    const usage = { prompt: 100, output: 10 };
    if (replies === 0) return { text: '1. Count\n2. Finish', usage };
    if (calls < steps) return { calls: [{ name: 'run', args: { command: `echo ${calls} > n.txt` } }], usage };
    return { calls: [{ name: 'finish', args: { summary: 'done', risks: 'none', how_to_test: 'none' } }], usage };
  };
}

/**
 * Where a step's time goes, from the task's own history: activities waiting to be picked up, running,
 * and workflow tasks from scheduled to completed (p50 of each, ms).
 */
async function historyPhases(client: import('@temporalio/client').Client, id: string): Promise<Record<string, unknown>> {
  const history = await client.workflow.getHandle(id).fetchHistory();
  const ms = (t: any): number => Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
  const scheduled = new Map<string, { at: number; type: string }>();
  const started = new Map<string, number>();
  const out: Record<string, number[]> = {};
  const add = (k: string, v: number) => (out[k] ??= []).push(v);
  let wftScheduled = 0;
  for (const e of history.events ?? []) {
    const at = ms(e.eventTime);
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes) scheduled.set(id, { at, type: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?' });
    if (e.activityTaskStartedEventAttributes) {
      const s = scheduled.get(String(e.activityTaskStartedEventAttributes.scheduledEventId));
      if (s) add(`${s.type}: scheduled→started`, at - s.at);
      started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), at);
    }
    if (e.activityTaskCompletedEventAttributes) {
      const key = String(e.activityTaskCompletedEventAttributes.scheduledEventId);
      const s = scheduled.get(key);
      if (s && started.has(key)) add(`${s.type}: started→completed`, at - started.get(key)!);
    }
    if (e.workflowTaskScheduledEventAttributes) wftScheduled = at;
    if (e.workflowTaskCompletedEventAttributes) add('workflow task: scheduled→completed', at - wftScheduled);
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, summary(v).p50]));
}

async function main(): Promise<void> {
  const temporal = await startTestTemporal((process.env.BENCH_TEMPORAL_ARGS ?? '').split(' ').filter(Boolean));
  const gemini = await startFakeGemini();
  process.env.GEMINI_API_KEY = gemini.apiKey;
  process.env.GOOGLE_GEMINI_BASE_URL = gemini.url;
  delete process.env.GOOGLE_API_KEY;
  const root = tempDir('bench-agent');
  const origin = makeOriginRepo(root, { 'README.md': '# bench\n' });
  const stack = await startTestStack(temporal, path.join(root, 'data'), `bench-agent-${process.pid}`, { SANDBOX_DRIVER: 'process', LOG_LEVEL: 'error' });
  const base = stack.url!;
  const budget = { max_steps: 10_000, max_tokens: 100_000_000, max_usd: 1_000 };
  const submit = async (steps: number): Promise<string> => {
    const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Count', planner: { kind: 'llm' }, budget });
    if (res.status !== 202) throw new Error(JSON.stringify(res.body));
    gemini.script(Array.from({ length: steps + 2 }, () => turnFor(steps)));
    return res.body.task_id;
  };
  const reviewed = (id: string) =>
    eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.items?.some((i: any) => i.kind === 'pr_review') || r.body.state === 'failed', `${id} to finish`, 600_000);

  try {
    // One task alone: the time between consecutive model requests is one whole agent step.
    const first = gemini.requests.length;
    const id = await submit(STEPS);
    const single = await reviewed(id);
    if (single.body.state === 'failed') throw new Error(single.body.result);
    const stamps = gemini.requests.slice(first).map((r) => r.at);
    const intervals = stamps.slice(2, STEPS + 1).map((t, i) => t - stamps[i + 1]!);
    const phases = await historyPhases(stack.client, id);

    // Concurrent tasks.
    const t0 = performance.now();
    const ids = await Promise.all(Array.from({ length: TASKS }, () => submit(STEPS_CONCURRENT)));
    await Promise.all(ids.map(reviewed));
    const seconds = (performance.now() - t0) / 1000;

    console.log(
      JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}`,
          node: process.version,
          single_task: { steps: STEPS, step_ms: summary(intervals), phases_ms: phases },
          concurrent: { tasks: TASKS, steps_each: STEPS_CONCURRENT, seconds: Math.round(seconds * 10) / 10, steps_per_second: Math.round(((TASKS * STEPS_CONCURRENT) / seconds) * 10) / 10 },
        },
        null,
        2,
      ),
    );
  } finally {
    await stack.stop();
    await temporal.stop();
    await gemini.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
