/**
 * Re-provisioning benchmark: how long a task parked on a human with its sandbox released takes, once the
 * human decides, to have a sandbox again (fresh clone of the base commit, checkpoint restored from its
 * bundle, gVisor sandbox started), against the first provisioning of the same tasks in the same run.
 *
 *   npm run bench:reprovision              # 20 tasks
 *   BENCH_TASKS=5 npm run bench:reprovision
 *
 * Both figures come from the tasks' own traces (workflow time): the first from the `provisioning` state change
 * to `provisioned`, the re-provisioning from the decision to `reprovisioned`.
 */
import os from 'node:os';
import path from 'node:path';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const TASKS = Number(process.env.BENCH_TASKS ?? 20);
/** Parked tasks give their sandbox back after about a second. */
const RELEASE_AFTER_MINUTES = 0.02;

async function main(): Promise<void> {
  const temporal = await startTestTemporal();
  const root = tempDir('bench-reprovision');
  const files: Record<string, string> = { 'README.md': '# bench\n', '.agent/policy.yaml': 'approval_commands:\n  - "^deploy\\\\b"\n' };
  for (let i = 0; i < 200; i++) files[`src/f${i}.txt`] = `${i}\n`.repeat(50);
  const origin = makeOriginRepo(root, files);
  const stack = await startTestStack(temporal, path.join(root, 'data'), `bench-reprovision-${process.pid}`, {
    SANDBOX_DRIVER: 'gvisor',
    SANDBOX_RELEASE_AFTER_MINUTES: String(RELEASE_AFTER_MINUTES),
  });
  const base = stack.url!;
  const get = async (id: string) => (await call(base, 'GET', `/v1/tasks/${id}`)).body;
  const traceOf = async (id: string): Promise<any[]> => (await call(base, 'GET', `/v1/tasks/${id}/trace`)).body.entries;
  try {
    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const res = await call(base, 'POST', '/v1/tasks', {
        repo: origin,
        goal: 'Bench',
        planner: { kind: 'recipe', steps: [{ run: `for f in src/*.txt; do echo ${i} >> "$f"; done` }, { run: 'deploy 2>/dev/null; cat src/f0.txt > out.txt' }] },
      });
      if (res.status !== 202) throw new Error(JSON.stringify(res.body));
      ids.push(res.body.task_id);
    }
    const first: number[] = [];
    const again: number[] = [];
    for (const id of ids) {
      const t = await eventually(() => get(id), (t) => t.sandbox === 'released', `${id} released`, 300_000);
      const item = t.items.find((i: any) => i.kind === 'risky_action' && i.status === 'pending');
      const entries = await traceOf(id);
      const started = entries.find((e) => e.type === 'state' && e.data?.to === 'provisioning') ?? entries[0];
      first.push(Date.parse(entries.find((e) => e.type === 'provisioned').at) - Date.parse(started.at));
      const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' });
      if (res.status !== 200) throw new Error(JSON.stringify(res.body));
      const after = await eventually(() => traceOf(id), (e) => e.some((x) => x.type === 'reprovisioned'), `${id} re-provisioned`, 120_000);
      const decided = (await get(id)).items.find((i: any) => i.item_id === item.item_id).resolution.at;
      again.push(Date.parse(after.find((e) => e.type === 'reprovisioned').at) - Date.parse(decided));
    }
    console.log(
      JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, mem_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version },
          tasks: TASKS,
          repository_files: Object.keys(files).length,
          first_provision_ms: summary(first),
          reprovision_after_release_ms: summary(again),
          ratio_p50: Math.round((summary(again).p50 / summary(first).p50) * 100) / 100,
        },
        null,
        2,
      ),
    );
  } finally {
    await stack.stop();
    await temporal.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
