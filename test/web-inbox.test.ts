/**
 * The web inbox in a real browser (chromium via playwright-core) against a real backend: every kind of
 * item on its card with its buttons on the first screen, decisions by click, keyboard, answer box and
 * grant form, a new item arriving without reload, a removed assertion highlighted and a long log collapsed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { ApiTokenStore } from '../api/auth/tokens';
import { ACTIONS_BY_KIND } from '../domain/rules';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { launchBrowser, signIn, testOutputDir } from './support/browser';
import { startFakeGemini, type FakeGemini } from './support/fake-gemini';
import { makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { startTestStack, startTestTemporal } from './support/stack';
import { taskApi } from './support/task-api';

const FILES = {
  'calc.js': 'exports.add = (a, b) => a + b;\n',
  'test.js': "const assert = require('assert');\nconst { add } = require('./calc');\nassert.strictEqual(add(2, 3), 5);\nconsole.log('tests pass');\n",
  'package.json': '{"name": "fixture", "private": true, "scripts": {"test": "node test.js"}}\n',
};

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
let root: string;
let gemini: FakeGemini;
let browser: Browser;
let page: Page;
const saved: Record<string, string | undefined> = {};
const api = taskApi(() => base, { itemTimeoutMs: 60_000 });
const ids: Record<string, string> = {};

async function submit(spec: Record<string, unknown>): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, requester: 'alice', ...spec });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.task_id;
}

const recipe = (...steps: string[]) => ({ kind: 'recipe', steps: steps.map((run) => ({ run })) });

/** The card of the task's pending item, once its detail has loaded. */
function card(taskId: string) {
  return page.locator(`[data-testid="card"][data-task="${taskId}"]`);
}

async function ready(taskId: string): Promise<void> {
  await card(taskId).and(page.locator('[data-ready="true"]')).waitFor({ timeout: 20_000 });
}

describe('web inbox', () => {
  before(async () => {
    temporal = await startTestTemporal();
    gemini = await startFakeGemini();
    const env = { GEMINI_API_KEY: gemini.apiKey, GOOGLE_GEMINI_BASE_URL: gemini.url, GOOGLE_API_KEY: undefined };
    for (const [k, v] of Object.entries(env)) {
      saved[k] = process.env[k];
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    root = tempDir('web-inbox');
    origin = makeOriginRepo(root, FILES);
    stack = await startTestStack(temporal, path.join(root, 'data'), `web-${process.pid}`, { SANDBOX_DRIVER: 'process' });
    base = stack.url!;
    browser = await launchBrowser();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });

    const usage = { prompt: 1_000, output: 100 };
    gemini.script([
      { text: '1. Ask\n2. Finish', usage },
      { calls: [{ name: 'ask_human', args: { question: 'Should add() also accept strings?' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Nothing to change.', risks: 'none', how_to_test: 'npm test' } }], usage },
    ]);
    ids['clarification'] = await submit({ goal: 'Decide about strings', planner: { kind: 'llm', check_commands: ['true'] } });
    ids['plan_approval'] = await submit({ goal: 'Print a greeting', planner: recipe('echo hello'), policy: { require_plan_approval: true } });
    ids['risky_action'] = await submit({ goal: 'Deploy the thing', planner: recipe('echo deploy production'), policy: { approval_commands: ['^echo deploy'] } });
    ids['budget_request'] = await submit({ goal: 'Two steps on a budget of one', planner: recipe('echo one', 'echo two'), budget: { max_steps: 1 } });
    ids['health_alert'] = await submit({ goal: 'A step that fails loudly', planner: recipe('for i in $(seq 1 60); do echo "output line $i"; done; exit 3') });
    ids['pr_review'] = await submit({ goal: 'Drop the flaky assertion', planner: recipe("sed -i '/assert.strictEqual/d' test.js") });
    for (const [kind, id] of Object.entries(ids)) await api.nextItem(id, [kind]);
    await signIn(page, stack);
  });

  after(async () => {
    // Stop the page's polling first, so no request of it is still inside the backend when the backend stops.
    await page?.goto('about:blank').catch(() => undefined);
    await browser?.close();
    await api.cancelOpen(Object.values(ids)).catch(() => undefined);
    await stack?.stop();
    await temporal?.stop();
    await gemini?.close();
    if (root) fs.rmSync(root, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('serves the app with a strict CSP and leaves /v1 to the API', async () => {
    const res = await fetch(`${base}/`, { headers: { accept: 'text/html' } });
    assert.equal(res.status, 200);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = await res.text();
    assert.doesNotMatch(html.replace(/<script type="module" src="\/assets\/[^"]+"><\/script>/, ''), /<script/, 'no inline script');
    const asset = /src="(\/assets\/[^"]+)"/.exec(html)![1]!;
    const js = await fetch(`${base}${asset}`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('cache-control') ?? '', /immutable/);
    assert.equal((await fetch(`${base}/tasks/t-anything`, { headers: { accept: 'text/html' } })).status, 200, 'an app route falls back to index.html');
    const v1 = await call(base, 'GET', '/v1/no-such-route', undefined, { accept: 'text/html' });
    assert.equal(v1.status, 404);
    assert.equal(v1.body.error.code, 'not_found', '/v1 never falls back to the app');
    assert.equal((await fetch(`${base}/assets/../package.json`)).status, 404);
  });

  it('preloads the first reads without letting the URL write markup, and serves assets precompressed by Accept-Encoding', async () => {
    const hostile = `${base}/?repo=${encodeURIComponent('"><script>alert(1)</script>')}&kind=risky_action`;
    const html = await (await fetch(hostile, { headers: { accept: 'text/html' } })).text();
    assert.match(html, /<link rel="preload" as="fetch" href="\/v1\/me" crossorigin="anonymous" \/>/);
    const preload = /<link rel="preload" as="fetch" href="(\/v1\/inbox\?[^"]*)"/.exec(html)?.[1];
    assert.equal(preload, '/v1/inbox?limit=20&#38;kind=risky_action&#38;repo=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E');
    assert.doesNotMatch(html, /<script>/);
    const asset = /src="(\/assets\/[^"]+)"/.exec(html)![1]!;
    const plain = await (await fetch(`${base}${asset}`, { headers: { 'accept-encoding': 'identity' } })).text();
    for (const [accept, encoding] of [['gzip, deflate, br', 'br'], ['gzip', 'gzip'], ['br;q=0, gzip', 'gzip'], ['identity', null]] as const) {
      // Node's fetch decodes br and gzip itself, so the body must equal the plain file.
      const res = await fetch(`${base}${asset}`, { headers: { 'accept-encoding': accept } });
      assert.equal(res.headers.get('content-encoding'), encoding, accept);
      assert.match(res.headers.get('vary') ?? '', /accept-encoding/i, accept);
      assert.match(res.headers.get('content-type') ?? '', /javascript/, accept);
      assert.match(res.headers.get('cache-control') ?? '', /immutable/, accept);
      assert.equal(await res.text(), plain, accept);
    }
  });

  it('shows each kind on the first screen with its decision fields and exactly its buttons', async () => {
    for (const [kind, id] of Object.entries(ids)) {
      await page.goto(`${base}/?kind=${kind}`);
      await ready(id);
      const c = card(id);
      const buttons = await c.locator('[data-action]').evaluateAll((els) => els.map((e) => e.getAttribute('data-action')));
      assert.deepEqual([...buttons].sort(), [...ACTIONS_BY_KIND[kind as keyof typeof ACTIONS_BY_KIND]].sort(), kind);
      const parts = ['card-title', 'card-wait', 'card-risk', 'card-cost', 'key-detail'];
      if (kind === 'risky_action' || kind === 'pr_review') {
        parts.push('card-why');
        await c.getByTestId('card-why').waitFor();
      }
      for (const part of parts) {
        const box = await c.getByTestId(part).first().boundingBox();
        assert.ok(box, `${kind}: ${part} is shown`);
        assert.ok(box.y >= 0 && box.y + box.height <= 800 && box.x >= 0 && box.x + box.width <= 1280, `${kind}: ${part} inside the first screen: ${JSON.stringify(box)}`);
      }
      for (const b of await c.locator('[data-action]').all()) {
        const box = (await b.boundingBox())!;
        assert.ok(box.y + box.height <= 800 && box.x + box.width <= 1280, `${kind}: button ${await b.getAttribute('data-action')} on the first screen`);
      }
      assert.notEqual(await c.getByTestId('card-cost').textContent(), '…', `${kind}: cost shown`);
      await page.screenshot({ path: path.join(testOutputDir(), `web-inbox-${kind}.png`) });
    }
    await page.goto(`${base}/?kind=risky_action`);
    await ready(ids['risky_action']!);
    assert.match((await card(ids['risky_action']!).getByTestId('key-detail').textContent()) ?? '', /echo deploy production/);
    assert.match((await card(ids['risky_action']!).getByTestId('card-why').textContent()) ?? '', /\^echo deploy/);
  });

  it('offers a viewer no decision and no submit form, each control saying why, and sends nothing', async () => {
    const { token } = new ApiTokenStore(path.join(root, 'data')).create({ name: 'watcher', role: 'viewer', teams: ['default'] });
    const seen = await call(base, 'GET', '/v1/inbox', undefined, { authorization: `Bearer ${token}` });
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.ok(Object.values(ids).every((id) => JSON.stringify(seen.body).includes(id)), `the viewer sees every item: ${JSON.stringify(seen.body).slice(0, 2000)}`);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, extraHTTPHeaders: { authorization: `Bearer ${token}` } });
    try {
      const viewer = await context.newPage();
      await viewer.goto(`${base}/`);
      for (const id of Object.values(ids)) await viewer.locator(`[data-testid="card"][data-task="${id}"]`).waitFor();
      const controls = await viewer.locator('[data-testid="card"] [data-action]').evaluateAll((els) =>
        els.map((e) => ({ action: e.getAttribute('data-action'), disabled: e.hasAttribute('disabled'), title: e.getAttribute('title') })),
      );
      const expected = Object.keys(ids).reduce((n, kind) => n + ACTIONS_BY_KIND[kind as keyof typeof ACTIONS_BY_KIND].length, 0);
      assert.equal(controls.length, expected, JSON.stringify(controls));
      for (const c of controls) {
        assert.equal(c.disabled, true, `${c.action} is disabled for a viewer`);
        assert.match(c.title ?? '', /needs the (approver|submitter) role.*\(you are viewer\)/, `${c.action} says why`);
      }
      // A shortcut past the disabled button says why, and sends nothing.
      await viewer.goto(`${base}/?kind=risky_action`);
      const risky = viewer.locator(`[data-testid="card"][data-task="${ids['risky_action']}"]`);
      await risky.and(viewer.locator('[data-ready="true"]')).waitFor({ timeout: 20_000 });
      await viewer.keyboard.press('a');
      assert.match((await risky.getByTestId('result').textContent()) ?? '', /needs the approver role \(you are viewer\)/);
      await viewer.goto(`${base}/tasks/${encodeURIComponent(ids['risky_action']!)}`);
      await viewer.getByTestId('task-page').waitFor();
      assert.equal(await viewer.locator('[data-action="cancel"]').last().isDisabled(), true, 'a viewer who did not request the task may not cancel it');
      await viewer.goto(`${base}/submit`);
      assert.match((await viewer.getByTestId('submit-refused').textContent()) ?? '', /submitting a task needs the submitter role \(you are viewer\)/);
      assert.equal(await viewer.getByTestId('submit-form').locator('button[type="submit"]').isDisabled(), true);
    } finally {
      await context.close();
    }
    // A submitter may message a task, but a message on a health alert retries it: a decision, an approver's.
    const submitter = new ApiTokenStore(path.join(root, 'data')).create({ name: 'sender', role: 'submitter', teams: ['default'] });
    const asSubmitter = await browser.newContext({ viewport: { width: 1280, height: 800 }, extraHTTPHeaders: { authorization: `Bearer ${submitter.token}` } });
    try {
      const p = await asSubmitter.newPage();
      await p.goto(`${base}/?kind=health_alert`);
      const alert = p.locator(`[data-testid="card"][data-task="${ids['health_alert']}"]`);
      await alert.waitFor();
      const retry = alert.locator('[data-action="message"]');
      assert.equal(await retry.isDisabled(), true, 'a submitter may not retry a health alert');
      assert.match((await retry.getAttribute('title')) ?? '', /needs the approver role \(you are submitter\)/);
    } finally {
      await asSubmitter.close();
    }
    for (const [kind, id] of Object.entries(ids)) {
      assert.ok((await api.task(id)).items.some((i: any) => i.kind === kind && i.status === 'pending'), `${kind} still pending`);
    }
  });

  it('highlights the removed assertion in the diff', async () => {
    await page.goto(`${base}/?kind=pr_review`);
    await ready(ids['pr_review']!);
    // The card says what the diff's rules flagged before anyone opens it.
    await card(ids['pr_review']!).getByTestId('card-why').filter({ hasText: /assertion removed/ }).waitFor();
    await card(ids['pr_review']!).getByTestId('show-diff').click();
    const risky = card(ids['pr_review']!).getByTestId('risky-line');
    await risky.first().waitFor();
    const text = await risky.first().textContent();
    assert.match(text ?? '', /assert\.strictEqual\(add\(2, 3\), 5\)/);
    assert.match(text ?? '', /assertion removed/);
    await page.screenshot({ path: path.join(testOutputDir(), 'web-inbox-diff.png') });
  });

  it('collapses a long log to its exit code and last lines, and loads the whole log on demand', async () => {
    await page.goto(`${base}/?kind=health_alert`);
    await ready(ids['health_alert']!);
    const log = card(ids['health_alert']!).getByTestId('log');
    assert.match((await log.textContent()) ?? '', /exit 3/);
    const tail = (await log.getByTestId('log-tail').textContent()) ?? '';
    assert.match(tail, /output line 60/);
    assert.doesNotMatch(tail, /output line 1\n/);
    const clipped = await log.getByTestId('log-tail').evaluate((el) => el.scrollHeight > el.clientHeight + 1);
    assert.equal(clipped, false, 'the last lines are visible, not scrolled away');
    await log.getByTestId('log-more').click();
    assert.match((await log.getByTestId('log-full').textContent()) ?? '', /output line 1\n[\s\S]*output line 60/);
  });

  it('approves with a click and with the keyboard, answers a question and grants a budget', async () => {
    await page.goto(`${base}/`);
    for (const id of Object.values(ids)) await card(id).waitFor();

    // One click approves the plan.
    await card(ids['plan_approval']!).locator('[data-action="approve"]').click();
    await card(ids['plan_approval']!).getByTestId('result').waitFor();
    await eventually(() => api.task(ids['plan_approval']!), (t) => t.items.some((i: any) => i.kind === 'plan_approval' && i.resolution?.action === 'approve'), 'the plan approved');

    // j moves to the risky card, a approves it.
    const order = await page.getByTestId('card').evaluateAll((els) => els.map((e) => e.getAttribute('data-task')));
    const at = order.indexOf(ids['risky_action']!);
    await page.locator('body').click({ position: { x: 1270, y: 790 } });
    // k to the top (the click above selected the plan's card), then j down to the risky one.
    for (let i = 0; i < order.length; i++) await page.keyboard.press('k');
    for (let i = 0; i < at; i++) await page.keyboard.press('j');
    const sel = await page.locator('.card.selected').getAttribute('data-task').catch(() => null);
    assert.match((await card(ids['risky_action']!).getAttribute('class')) ?? '', /selected/, JSON.stringify({ order, at, sel, ids }));
    await page.keyboard.press('a');
    await eventually(() => api.task(ids['risky_action']!), (t) => t.items.some((i: any) => i.kind === 'risky_action' && i.resolution?.action === 'approve'), 'the command approved');

    // The answer box.
    const q = card(ids['clarification']!);
    await q.getByTestId('answer-box').fill('Numbers only.');
    await q.locator('[data-action="answer"]').click();
    await q.getByTestId('result').waitFor();
    await eventually(() => api.task(ids['clarification']!), (t) => t.items.some((i: any) => i.kind === 'clarification' && i.resolution?.answer === 'Numbers only.'), 'the question answered');

    // The grant form.
    const b = card(ids['budget_request']!);
    await b.getByTestId('grant-amount').fill('3');
    await b.locator('[data-action="grant_budget"]').click();
    await b.getByTestId('result').waitFor();
    await eventually(() => api.task(ids['budget_request']!), (t) => t.budget.max_steps === 4, 'the budget granted');
  });

  it('says who settled an item someone else decided first', async () => {
    // A page whose event stream is down (polling every few seconds) still shows the item when someone else settles it.
    await page.route('**/v1/events', (r) => r.abort());
    await page.goto(`${base}/?kind=pr_review`);
    await ready(ids['pr_review']!);
    const item = await api.nextItem(ids['pr_review']!, ['pr_review']);
    await api.decide(ids['pr_review']!, item, { action: 'reject', comment: 'no' });
    await card(ids['pr_review']!).locator('[data-action="approve"]').click();
    const result = card(ids['pr_review']!).getByTestId('result');
    await result.waitFor();
    assert.match((await result.textContent()) ?? '', /settled|no longer pending|ended/i);
    await page.unroute('**/v1/events');
  });

  it('shows a new item without a reload', async () => {
    await page.goto(`${base}/`);
    await page.getByTestId('inbox').waitFor();
    // Live updates: the stream is open (the page polls only once a minute while it is), and the card arrives from it.
    await page.getByTestId('live').and(page.locator('.on')).waitFor({ timeout: 10_000 });
    const marker = await page.evaluate(() => ((globalThis as unknown as { __noReload: number }).__noReload = Math.random()));
    // The command is the attacker's text: it must arrive as text, never as markup.
    const command = `echo deploy '<img src=x onerror="globalThis.__xss=1">'`;
    ids['late'] = await submit({ goal: 'Arrives while the page is open', planner: recipe(command), policy: { approval_commands: ['^echo deploy'] } });
    await card(ids['late']).waitFor({ timeout: 20_000 });
    assert.equal(await page.evaluate(() => (globalThis as unknown as { __noReload?: number }).__noReload), marker, 'the page was not reloaded');
    await ready(ids['late']);
    assert.match((await card(ids['late']).getByTestId('card-title').textContent()) ?? '', /<img src=x onerror=/);
    assert.equal(await card(ids['late']).locator('img').count(), 0, 'no element from the command');
    assert.equal(await page.evaluate(() => (globalThis as unknown as { __xss?: number }).__xss), undefined);
  });

  it('submits a task from the form, opens its page with the timeline and usage, and cancels it there', async () => {
    await page.goto(`${base}/submit`);
    const form = page.getByTestId('submit-form');
    await form.locator('input[name="repo"]').fill(origin);
    await form.locator('textarea[name="goal"]').fill('Submitted from the browser');
    await form.locator('input[name="planner"]').nth(1).check();
    await form.locator('textarea[name="steps"]').fill('echo deploy from the form');
    await form.locator('textarea[name="approval_commands"]').fill('^echo deploy');
    await form.locator('input[name="max_steps"]').fill('7');
    await form.locator('button[type="submit"]').click();
    await page.getByTestId('task-page').waitFor();
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    ids['form'] = id;
    const t = await api.task(id);
    assert.equal(t.spec.goal, 'Submitted from the browser');
    assert.equal(t.budget.max_steps, 7);
    assert.deepEqual(t.policy.approval_commands, ['^echo deploy']);
    await api.nextItem(id, ['risky_action']);
    await page.reload();
    await page.getByTestId('timeline').locator('li').first().waitFor();
    assert.match((await page.locator('.usage').textContent()) ?? '', /steps[\s\S]*\/ 7/);
    await page.locator('[data-action="cancel"]').last().click();
    await page.locator('[data-action="confirm-cancel"]').click();
    await eventually(() => api.task(id), (v) => v.state === 'cancelled', 'the task cancelled from its page');
  });

  it('answers the diff route only for items that have a diff, and only by checked ids', async () => {
    const plan = (await api.task(ids['plan_approval']!)).items[0];
    const noDiff = await call(base, 'GET', `/v1/tasks/${ids['plan_approval']}/inbox/${plan.item_id}/diff`);
    assert.equal(noDiff.status, 404);
    assert.equal(noDiff.body.error.code, 'no_diff');
    assert.equal((await call(base, 'GET', `/v1/tasks/${ids['pr_review']}/inbox/pr_review-99/diff`)).body.error.code, 'unknown_item');
    assert.equal((await call(base, 'GET', `/v1/tasks/${ids['pr_review']}/inbox/..%2F..%2Fetc/diff`)).status, 404);
    const review = (await api.task(ids['pr_review']!)).items.find((i: any) => i.kind === 'pr_review');
    const d = await call(base, 'GET', `/v1/tasks/${ids['pr_review']}/inbox/${review.item_id}/diff`);
    assert.equal(d.status, 200);
    assert.equal(d.body.source, 'artifact', 'the full diff from the store');
    assert.ok(d.body.risky >= 1);
  });
});
