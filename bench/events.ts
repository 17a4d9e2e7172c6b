/**
 * Event latency: from a workflow transition to the change being seen, by an SSE client of `GET /v1/events`
 * and by the web inbox in a real browser (its DOM). Real dev server, backend in this process.
 *
 *   npm run bench:events                # 40 transitions
 *
 * Each task parks on a `risky_action` (a transition: the item opens) and is then approved (a transition: the
 * decision's Update returns). Timed: item opened → its card in the page's DOM; decision → the SSE client has
 * the task without the item, and → the card gone from the page. Playwright's wait adds its own few ms, so
 * the browser figures err on the slow side.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { launchBrowser, signIn } from '../test/support/browser';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { listenEvents } from '../test/support/sse';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const TRANSITIONS = Number(process.env.BENCH_TRANSITIONS ?? 40);

// The page's document, where the waits below run (Node's types have no DOM).
declare const document: { querySelector(selector: string): unknown };

/** Resolves when `selector` matches in the page (or, with `gone`, stops matching), checked every frame: Playwright's own waits back off to 500 ms. */
function inDom(page: import('playwright-core').Page, selector: string, gone = false): Promise<unknown> {
  return page.waitForFunction(([sel, absent]) => (document.querySelector(sel) === null) === absent, [selector, gone] as const, { polling: 'raf', timeout: 30_000 });
}

async function main(): Promise<void> {
  const temporal = await startTestTemporal();
  const root = tempDir('bench-events');
  const origin = makeOriginRepo(root, { 'README.md': 'bench\n' });
  const stack = await startTestStack(temporal, path.join(root, 'data'), `bench-events-${process.pid}`, { SANDBOX_DRIVER: 'process' });
  const base = stack.url!;
  const stream = listenEvents(base, stack.auth.adminToken!);
  const browser = await launchBrowser();
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const fromReturn: number[] = [];
  const fromRequest: number[] = [];
  const toPageGone: number[] = [];
  const toPageOpened: number[] = [];
  try {
    await signIn(page, stack);
    await page.goto(`${base}/`);
    await page.locator('[data-testid="live"].on').waitFor({ timeout: 30_000 });
    const body = { repo: origin, goal: 'bench: parked on approval', planner: { kind: 'recipe', steps: [{ run: 'echo change >> README.md' }] }, policy: { approval_commands: ['^echo'] } };
    for (let i = 0; i < TRANSITIONS; i++) {
      const id = (await call(base, 'POST', '/v1/tasks', body)).body.task_id as string;
      const shown = inDom(page, `[data-testid="card"][data-task="${id}"]`).then(() => Date.now());
      const parked = await eventually(() => call(base, 'GET', `/v1/tasks/${id}`), (r) => r.body.items?.some((x: any) => x.status === 'pending'), `${id} parked`);
      const item = parked.body.items.find((x: any) => x.status === 'pending');
      // The item's created_at is the workflow's clock at the transition (this machine's clock).
      toPageOpened.push((await shown) - Date.parse(item.created_at));
      await stream.waitFor((e) => e.data.task_id === id && e.data.items.some((x: any) => x.item_id === item.item_id), `${id} parked event`);
      const t0 = performance.now();
      const res = await call(base, 'POST', `/v1/tasks/${id}/inbox/${item.item_id}`, { action: 'approve' });
      const t1 = performance.now();
      if (res.status !== 200) throw new Error(`decision failed: ${res.status} ${JSON.stringify(res.body)}`);
      const [e, gone] = await Promise.all([
        stream.waitFor((x) => x.at >= t0 && x.data.task_id === id && !x.data.items.some((y: any) => y.item_id === item.item_id), `${id} approved event`),
        // This item's card: the approved step soon opens a pr_review item, a new card of the same task.
        inDom(page, `[data-testid="card"][data-task="${id}"][data-item="${item.item_id}"]`, true).then(() => performance.now()),
      ]);
      fromReturn.push(Math.max(0, e.at - t1));
      fromRequest.push(e.at - t0);
      toPageGone.push(Math.max(0, gone - t1));
    }
  } finally {
    await page.goto('about:blank').catch(() => undefined);
    await browser.close();
    await stream.close();
    await stack.stop();
    await temporal.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  const row = (what: string, samples: number[]): string => {
    const s = summary(samples);
    return `| ${what} | ${s.n} | ${s.p50} | ${s.p95} | ${s.max} |`;
  };
  console.log(`# Event latency (${TRANSITIONS} transitions; ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString()})\n`);
  console.log('| measured | events | p50 ms | p95 ms | max ms |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  console.log(row("decision's Update returned → SSE client has the change", fromReturn));
  console.log(row('decision sent → SSE client has the change', fromRequest));
  console.log(row("decision's Update returned → card gone from the browser's DOM", toPageGone));
  console.log(row("item opened (its created_at) → card in the browser's DOM", toPageOpened));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
