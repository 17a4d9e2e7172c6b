/**
 * Web inbox benchmark: with many open items (1,000 by default), the time from navigation to the first
 * interactive card (its Approve button rendered and enabled) in a real browser, over repeated loads.
 *
 *   npm run bench:web                          # 1,000 parked tasks
 *   BENCH_TASKS=100 BENCH_LOADS=10 npm run bench:web
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, signIn } from '../test/support/browser';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const TASKS = Number(process.env.BENCH_TASKS ?? 1_000);
const LOADS = Number(process.env.BENCH_LOADS ?? 30);
const START_CONCURRENCY = Number(process.env.BENCH_START_CONCURRENCY ?? 16);

async function main(): Promise<void> {
  const temporal = await startTestTemporal();
  const root = tempDir('bench-web');
  const origin = makeOriginRepo(root, { 'README.md': 'bench\n' });
  const stack = await startTestStack(temporal, path.join(root, 'data'), `bench-web-${process.pid}`, { SANDBOX_DRIVER: 'process' });
  const base = stack.url!;
  const browser = await launchBrowser();
  try {
    // Every task parks on a risky_action before its only step.
    const body = { repo: origin, goal: 'bench: parked on approval', planner: { kind: 'recipe', steps: [{ run: 'echo change >> README.md' }] }, policy: { approval_commands: ['^echo'] } };
    let next = 0;
    await Promise.all(
      Array.from({ length: START_CONCURRENCY }, async () => {
        while (next < TASKS) {
          next += 1;
          const res = await call(base, 'POST', '/v1/tasks', body);
          if (res.status !== 202) throw new Error(`start failed: ${res.status} ${JSON.stringify(res.body)}`);
        }
      }),
    );
    await eventually(() => call(base, 'GET', '/v1/inbox?limit=1000'), (r) => r.body.count >= TASKS, `${TASKS} parked tasks`, 30 * 60_000);

    const cold: number[] = [];
    const warm: number[] = [];
    const coldPhases: Phases[] = [];
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await signIn(page, stack);
    for (let i = 0; i < LOADS; i++) {
      // Cold: a fresh context (no cached assets); warm: the same page reloading (assets cached, as day to day).
      const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const p = await fresh.newPage();
      await signIn(p, stack);
      cold.push(await firstCard(p, base));
      coldPhases.push(await phasesOf(p));
      await fresh.close();
      warm.push(await firstCard(page, base));
    }
    const listing = (await call(base, 'GET', '/v1/inbox?limit=1000')).body.items.length;
    const row = (name: string, s: ReturnType<typeof summary>): string => `| ${name} | ${s.n} | ${s.p50} | ${s.p95} | ${s.max} |`;
    process.stdout.write(
      [
        `Web inbox, ${TASKS} open items (${listing} listed), chromium headless 1280×800; ${new Date().toISOString()}; ${os.cpus().length} cores, node ${process.version}`,
        '',
        '| page load → first interactive card | loads | p50 ms | p95 ms | max ms |',
        '|---|---|---|---|---|',
        row('cold (new browser context)', summary(cold)),
        row('warm (cached assets)', summary(warm)),
        '',
        'Where a cold load\'s time goes (ms from navigation start, the page\'s own resource timing):',
        '',
        '| phase | p50 | p95 | max |',
        '|---|---|---|---|',
        ...PHASES.map((k) => {
          const s = summary(coldPhases.map((x) => x[k]).filter((v) => v >= 0));
          return `| ${k} | ${s.p50} | ${s.p95} | ${s.max} |`;
        }),
        '',
      ].join('\n'),
    );
  } finally {
    await browser.close();
    // Parked tasks stay parked on the dev server, which stops with them.
    await stack.stop();
    await temporal.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** Milliseconds from navigation to the first card's Approve button being enabled. */
async function firstCard(page: import('playwright-core').Page, base: string): Promise<number> {
  const t0 = performance.now();
  await page.goto(`${base}/`, { waitUntil: 'commit' });
  await page.locator('[data-testid="card"] [data-action="approve"]:not([disabled])').first().waitFor({ state: 'visible', timeout: 30_000 });
  return performance.now() - t0;
}

/** Milestones of one load, in ms from navigation start (-1 when the page made no such request). */
const PHASES = ['document received', 'script received', 'fetches started (script ran)', '/v1/me sent', '/v1/me received', '/v1/inbox sent', '/v1/inbox received', '/v1/inbox server ms', 'first card (page clock)'] as const;
type Phases = Record<(typeof PHASES)[number], number>;

/** The load's milestones from the page's navigation and resource timing entries (read after the first card showed). */
async function phasesOf(page: import('playwright-core').Page): Promise<Phases> {
  // Runs in the page: the browser's PerformanceResourceTiming fields this reads (Node's types lack the DOM's).
  type Timing = { name: string; startTime: number; requestStart: number; responseStart: number; responseEnd: number };
  return page.evaluate(() => {
    const entries = (type: string) => performance.getEntriesByType(type as never) as unknown as Timing[];
    const nav = entries('navigation')[0]!;
    const res = entries('resource');
    const first = (re: RegExp) => res.find((r) => re.test(new URL(r.name).pathname + new URL(r.name).search));
    const js = first(/^\/assets\/app-.*\.js$/);
    const me = first(/^\/v1\/me$/);
    const inbox = first(/^\/v1\/inbox\?/);
    return {
      'document received': nav.responseEnd,
      'script received': js?.responseEnd ?? -1,
      'fetches started (script ran)': me?.startTime ?? -1,
      '/v1/me sent': me?.requestStart ?? -1,
      '/v1/me received': me?.responseEnd ?? -1,
      '/v1/inbox sent': inbox?.requestStart ?? -1,
      '/v1/inbox received': inbox?.responseEnd ?? -1,
      '/v1/inbox server ms': inbox ? inbox.responseStart - inbox.requestStart : -1,
      'first card (page clock)': performance.now(),
    };
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
