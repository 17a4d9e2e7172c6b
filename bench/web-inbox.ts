/**
 * Web inbox benchmark: with many open items (1,000 by default), the time from navigation to the first
 * interactive card (its Approve button rendered and enabled) in a real browser, over repeated loads.
 *
 *   npm run bench:web                          # 1,000 parked tasks
 *   BENCH_TASKS=100 BENCH_LOADS=10 npm run bench:web
 *   BENCH_BACK_TO_BACK=1 npm run bench:web     # the first version's protocol, for comparison
 *
 * Each load starts on a quiet server: the page before it has settled (no request of it in flight but its
 * event stream), as when one person opens the inbox. Cold is a new browser context holding only the session
 * cookie (nothing cached, no page shown before); warm reloads a page that has shown the inbox before.
 * The first version signed each cold context in through the login link, whose redirect had already shown
 * the inbox (so its assets were cached), and started each load while the last one's reads still ran.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { launchBrowser, signIn } from '../test/support/browser';
import { makeOriginRepo, tempDir } from '../test/support/git-fixture';
import { call, eventually } from '../test/support/http';
import { startTestStack, startTestTemporal } from '../test/support/stack';
import { summary } from './stats';

const TASKS = Number(process.env.BENCH_TASKS ?? 1_000);
const LOADS = Number(process.env.BENCH_LOADS ?? 30);
const START_CONCURRENCY = Number(process.env.BENCH_START_CONCURRENCY ?? 16);
const BACK_TO_BACK = process.env.BENCH_BACK_TO_BACK === '1';
/** A page counts as settled after this long with no request in flight (its event stream aside). */
const QUIET_MS = 300;

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
    await context.addInitScript(watchFirstCard, FIRST_CARD);
    const page = await context.newPage();
    const settledWarm = settler(page);
    await signIn(page, stack);
    await settledWarm();
    for (let i = 0; i < LOADS; i++) {
      // Cold: a fresh context (no cached assets); warm: the same page reloading (assets cached, as day to day).
      const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await fresh.addInitScript(watchFirstCard, FIRST_CARD);
      const p = await fresh.newPage();
      const settledCold = settler(p);
      if (BACK_TO_BACK) await signIn(p, stack);
      else await fresh.addCookies(await context.cookies());
      cold.push(await firstCard(p, base));
      coldPhases.push(await phasesOf(p));
      if (!BACK_TO_BACK) await settledCold();
      await fresh.close();
      warm.push(await firstCard(page, base));
      if (!BACK_TO_BACK) await settledWarm();
    }
    const listing = (await call(base, 'GET', '/v1/inbox?limit=1000')).body.items.length;
    const row = (name: string, s: ReturnType<typeof summary>): string => `| ${name} | ${s.n} | ${s.p50} | ${s.p95} | ${s.max} |`;
    process.stdout.write(
      [
        `Web inbox, ${TASKS} open items (${listing} listed), chromium headless 1280×800; ${new Date().toISOString()}; ${os.cpus().length} cores, node ${process.version}; ${BACK_TO_BACK ? 'back to back (first protocol)' : 'each load from a settled page'}`,
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

/** Waits, when called, until none of the page's requests but its event stream has been in flight for {@link QUIET_MS}. */
function settler(page: Page): () => Promise<void> {
  const inflight = new Set<object>();
  page.on('request', (r) => {
    if (!r.url().includes('/v1/events')) inflight.add(r);
  });
  page.on('requestfinished', (r) => inflight.delete(r));
  page.on('requestfailed', (r) => inflight.delete(r));
  return async () => {
    const deadline = Date.now() + 60_000;
    let quietSince = Date.now();
    while (Date.now() - quietSince < QUIET_MS) {
      if (Date.now() > deadline) throw new Error(`the page did not settle: ${inflight.size} requests in flight`);
      if (inflight.size > 0) quietSince = Date.now();
      await new Promise((r) => setTimeout(r, 25));
    }
  };
}

// Globals of the page the functions below run in (Node's types have no DOM).
declare const window: { __firstCard?: number };
declare const document: { querySelector(selector: string): unknown };
declare const requestAnimationFrame: (callback: () => void) => number;
declare const MutationObserver: new (callback: () => void) => { observe(target: unknown, options: object): void; disconnect(): void };

const FIRST_CARD = '[data-testid="card"] [data-action="approve"]:not([disabled])';

/**
 * Runs in every document of a page before its own scripts: notes, on the page's clock, the frame in which
 * the first card's enabled Approve button is in the DOM (`__firstCard`). Polling from here instead would
 * see it late: Playwright's waits back off to 500 ms between checks.
 */
function watchFirstCard(selector: string): void {
  const w = window;
  const seen = (): boolean => {
    if (w.__firstCard !== undefined || !document.querySelector(selector)) return w.__firstCard !== undefined;
    requestAnimationFrame(() => (w.__firstCard ??= performance.now()));
    return true;
  };
  const mo = new MutationObserver(() => {
    if (seen()) mo.disconnect();
  });
  mo.observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['disabled'] });
}

/** Milliseconds from asking for the navigation (this process's clock) to the first card's enabled Approve button. */
async function firstCard(page: Page, base: string): Promise<number> {
  const t0 = Date.now();
  await page.goto(`${base}/`, { waitUntil: 'commit' });
  const at = await page.waitForFunction(() => (window.__firstCard === undefined ? false : performance.timeOrigin + window.__firstCard), undefined, { polling: 'raf', timeout: 30_000 });
  return ((await at.jsonValue()) as number) - t0;
}

/** Milestones of one load, in ms from navigation start (-1 when the page made no such request). */
const PHASES = ['document received', 'script received', '/v1/me asked (preload or script)', 'script ran (DOMContentLoaded)', 'first contentful paint', '/v1/me sent', '/v1/me received', '/v1/inbox sent', '/v1/inbox received', '/v1/inbox server ms', 'first card'] as const;
type Phases = Record<(typeof PHASES)[number], number>;

/** The load's milestones from the page's navigation and resource timing entries (read after the first card showed). */
async function phasesOf(page: Page): Promise<Phases> {
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
      '/v1/me asked (preload or script)': me?.startTime ?? -1,
      'script ran (DOMContentLoaded)': (nav as unknown as { domContentLoadedEventStart: number }).domContentLoadedEventStart,
      'first contentful paint': entries('paint').find((e) => e.name === 'first-contentful-paint')?.startTime ?? -1,
      '/v1/me sent': me?.requestStart ?? -1,
      '/v1/me received': me?.responseEnd ?? -1,
      '/v1/inbox sent': inbox?.requestStart ?? -1,
      '/v1/inbox received': inbox?.responseEnd ?? -1,
      '/v1/inbox server ms': inbox ? inbox.responseStart - inbox.requestStart : -1,
      'first card': window.__firstCard ?? -1,
    };
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
