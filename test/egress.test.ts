/**
 * Egress end to end: a task's setup phase installs from a real npm registry (verdaccio on loopback,
 * reached under a made-up name through the worker's egress proxy), its planner phase is refused the
 * same registry until a human allows it from the inbox, the next task on the repository starts from the
 * setup cache, and the agent's `request_network` goes to a human who can refuse it. Real Temporal,
 * real runsc with a network namespace per sandbox, real git origins.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { Stack } from '../workers/stack';
import type { DevServer } from '../workers/temporal-server';
import { startFakeGemini, type FakeGemini } from './support/fake-gemini';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';
import { call, eventually } from './support/http';
import { ENDED_STATES, taskApi } from './support/task-api';
import { recordHistory } from './support/histories';
import { publishPackage, startNpmRegistry, type NpmRegistry } from './support/npm-registry';
import { startTestStack, startTestTemporal } from './support/stack';

const usage = { prompt: 200, output: 20 };
/** The registry's name inside sandboxes; EGRESS_HOSTS maps it to the loopback server. */
const REGISTRY = 'registry.test';
/** The same server under a second name: inside the operator's ceiling, in no task's allowlist. */
const MIRROR = 'mirror.test';

let temporal: DevServer;
let stack: Stack;
let base: string;
let origin: string;
let registry: NpmRegistry;
let gemini: FakeGemini;
const saved: Record<string, string | undefined> = {};
const started: string[] = [];

/** npm inside the sandbox, against the registry by its made-up name. */
function npmInstall(pkg: string): string {
  return `npm install --no-audit --no-fund --no-update-notifier --fetch-retries=0 --registry http://${REGISTRY}:${registry.port}/ ${pkg}`;
}

async function submit(body: Record<string, unknown>): Promise<string> {
  const res = await call(base, 'POST', '/v1/tasks', { repo: origin, goal: 'Add a dependency', requester: 'alice', ...body });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  started.push(res.body.task_id);
  return res.body.task_id;
}

const { task, nextItem, decide, ended, trace, cancelOpen } = taskApi(() => base, { itemTimeoutMs: 120_000 });

describe('egress through the proxy, a setup phase and grants from the inbox', () => {
  before(async () => {
    temporal = await startTestTemporal();
    registry = await startNpmRegistry();
    await publishPackage(registry, 'pad-a', '1.0.0', { 'index.js': 'module.exports = "a";\n' });
    await publishPackage(registry, 'pad-b', '1.0.0', { 'index.js': 'module.exports = "b";\n' });
    for (const k of ['GEMINI_API_KEY', 'GOOGLE_GEMINI_BASE_URL', 'GOOGLE_API_KEY']) saved[k] = process.env[k];
    delete process.env.GOOGLE_API_KEY;
    const root = tempDir('egress');
    origin = makeOriginRepo(root, {
      'package.json': `${JSON.stringify({ name: 'fixture', version: '1.0.0', private: true }, null, 2)}\n`,
      '.gitignore': 'node_modules/\n',
    });
    stack = await startTestStack(temporal, path.join(root, 'data'), `egress-${process.pid}`, {
      SANDBOX_DRIVER: 'gvisor',
      // localhost is in the ceiling but not in EGRESS_HOSTS: it resolves to loopback, which the proxy refuses.
      EGRESS_ALLOW: `${REGISTRY} ${MIRROR} localhost`,
      EGRESS_HOSTS: `${REGISTRY}=127.0.0.1:${registry.port} ${MIRROR}=127.0.0.1:${registry.port}`,
    });
    base = stack.url!;
  });

  beforeEach(async () => {
    gemini = await startFakeGemini();
    process.env.GEMINI_API_KEY = gemini.apiKey;
    process.env.GOOGLE_GEMINI_BASE_URL = gemini.url;
  });

  afterEach(async () => {
    await cancelOpen(started.splice(0));
    await gemini.close();
  });

  after(async () => {
    await stack?.stop();
    await registry?.stop();
    await temporal?.stop();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it('refuses at intake an allowlist entry outside the operator\'s ceiling', async () => {
    const res = await call(base, 'POST', '/v1/tasks', {
      repo: origin,
      goal: 'x',
      planner: { kind: 'recipe', steps: [{ run: 'true' }] },
      policy: { egress_allowlist: ['evil.test'] },
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, 'egress_not_allowed');
    assert.match(res.body.error.message, /evil\.test.*outside EGRESS_ALLOW/);
  });

  it('installs in the setup phase, refuses the planner phase until a human allows the registry, and lists the refusal for review', async () => {
    const id = await submit({
      setup: { commands: [npmInstall('pad-a')], egress_allowlist: [REGISTRY] },
      planner: { kind: 'recipe', steps: [{ name: 'add pad-b', run: `${npmInstall('pad-b')} && test -f node_modules/pad-b/index.js` }] },
    });
    const ask = await nextItem(id, ['risky_action', 'health_alert', 'pr_review']);
    assert.equal(ask.kind, 'risky_action', `the planner phase has no allowlist: npm is refused and a human is asked (${ask.title})`);
    assert.match(ask.title, /Allow egress to registry\.test for this task\?/);
    assert.deepEqual(ask.detail.hosts, [REGISTRY]);
    assert.equal(ask.detail.phase, 'planner');
    assert.ok(ask.detail.requests_seen.some((b: any) => b.host === REGISTRY && b.port === registry.port && b.step === 'add pad-b'), JSON.stringify(ask.detail));
    const view = await task(id);
    assert.deepEqual(view.egress.setup_allowlist, [REGISTRY]);
    assert.deepEqual(view.egress.allowlist, []);
    assert.ok(view.usage.net_bytes_received > 0, 'setup downloaded through the proxy, and it was metered');
    await decide(id, ask, { action: 'approve' });

    const review = await nextItem(id, ['pr_review', 'health_alert']);
    assert.equal(review.kind, 'pr_review', `the retried step reached the registry (${review.title})`);
    assert.ok(review.detail.blocked_requests.some((b: any) => b.host === REGISTRY && b.step === 'add pad-b'));
    assert.match(review.detail.summary, /## Network[\s\S]*registry\.test:\d+ in add pad-b/);
    assert.deepEqual(review.detail.network.granted.map((g: any) => `${g.domain}/${g.phase}/${g.actor}`), [`${REGISTRY}/planner/local admin`]);
    const lock = git(origin, 'show', `agent/${id}:package.json`);
    assert.match(lock, /pad-b/);
    assert.doesNotMatch(lock, /pad-a/, 'what setup changed in tracked files is undone; only its ignored files stay');
    const entries = await trace(id);
    assert.ok(entries.some((e) => e.type === 'setup' && /cache miss/.test(e.message)));
    assert.ok(entries.some((e) => e.type === 'setup' && /setup cached: \d+ files/.test(e.message)), JSON.stringify(entries.filter((e) => e.type === 'setup')));
    assert.ok(entries.some((e) => e.type === 'egress_granted' && e.actor === 'local admin'));
    await recordHistory(stack.client, id, 'recipe-setup-egress-granted-pending-review');
    await decide(id, review, { action: 'approve' });
    await ended(id);
  });

  it('does not cache a setup that reached a host a human allowed for that task only', async () => {
    const viaMirror = npmInstall('pad-b').replace(`http://${REGISTRY}:`, `http://${MIRROR}:`);
    const id = await submit({ setup: { commands: [viaMirror], egress_allowlist: [REGISTRY] }, planner: { kind: 'recipe', steps: [{ name: 'note', run: 'echo ok > note.txt' }] } });
    const ask = await nextItem(id, ['risky_action', 'health_alert', 'pr_review']);
    assert.equal(ask.kind, 'risky_action', ask.title);
    assert.equal(ask.detail.phase, 'setup');
    await decide(id, ask, { action: 'approve' });
    const review = await nextItem(id, ['pr_review', 'health_alert']);
    assert.equal(review.kind, 'pr_review', review.title);
    const setup = (await trace(id)).filter((e) => e.type === 'setup').map((e) => e.message);
    assert.ok(setup.some((m) => /setup not cached: it ran with hosts a human allowed for this task only \(mirror\.test\)/.test(m)), JSON.stringify(setup));
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('starts the next task on the same repository from the setup cache; another name of the server, and loopback by DNS, stay refused', async () => {
    const id = await submit({
      setup: { commands: [npmInstall('pad-a')], egress_allowlist: [REGISTRY] },
      policy: { egress_allowlist: [REGISTRY, 'localhost'] },
      planner: {
        kind: 'recipe',
        steps: [
          {
            name: 'use the cache',
            run: `test -f node_modules/pad-a/index.js && curl -sSf -m 10 -o /dev/null http://${REGISTRY}:${registry.port}/pad-a && ! curl -sSf -m 10 -o /dev/null http://${MIRROR}:${registry.port}/pad-a && ! curl --noproxy '' -sSf -m 10 -o /dev/null http://localhost:${registry.port}/pad-a && echo ok > used.txt`,
          },
        ],
      },
    });
    const item = await nextItem(id, ['pr_review', 'health_alert', 'risky_action']);
    assert.equal(item.kind, 'pr_review', `${item.title}: ${JSON.stringify(item.detail)}`);
    const entries = await trace(id);
    assert.ok(entries.some((e) => e.type === 'setup' && /setup cache hit/.test(e.message)), JSON.stringify(entries.filter((e) => e.type === 'setup')));
    assert.ok(!entries.some((e) => e.type === 'step' && /^setup/.test(e.message)), 'setup did not run again');
    assert.ok(
      item.detail.blocked_requests.some((b: any) => b.host === MIRROR && /allowlist/.test(b.reason)),
      `the mapped but unallowed name is refused: ${JSON.stringify(item.detail.blocked_requests)}`,
    );
    assert.ok(
      item.detail.blocked_requests.some((b: any) => b.host === 'localhost' && /loopback/.test(b.reason)),
      `an allowed name resolving to a loopback address the operator did not name is refused: ${JSON.stringify(item.detail.blocked_requests)}`,
    );
    await decide(id, item, { action: 'reject' });
    await ended(id);
  });

  it('asks a human when the agent calls request_network, and tells the agent it was refused', async () => {
    gemini.script([
      { text: '1. Fetch the package list\n2. Finish', usage },
      { calls: [{ name: 'run', args: { command: `curl -sS -f http://${MIRROR}:${registry.port}/pad-a` } }], usage },
      { calls: [{ name: 'request_network', args: { domain: MIRROR, reason: 'to read the package metadata' } }], usage },
      { calls: [{ name: 'write_file', args: { path: 'NOTES.md', content: 'offline\n' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Noted.', risks: 'none', how_to_test: 'none' } }], usage },
    ]);
    const id = await submit({ policy: { egress_allowlist: [REGISTRY] }, planner: { kind: 'llm', model: 'gemini-2.5-flash', check_commands: [] } });
    const ask = await nextItem(id, ['risky_action', 'pr_review', 'health_alert']);
    assert.equal(ask.kind, 'risky_action', ask.title);
    assert.equal(ask.detail.asked_by, 'agent');
    assert.equal(ask.detail.why, 'to read the package metadata');
    assert.ok(ask.detail.requests_seen.some((b: any) => b.host === MIRROR), 'the item shows what the agent was refused');
    await decide(id, ask, { action: 'reject', comment: 'work offline' });

    const review = await nextItem(id, ['pr_review', 'health_alert']);
    assert.equal(review.kind, 'pr_review', review.title);
    assert.ok(review.detail.blocked_requests.some((b: any) => b.host === MIRROR));
    const told = JSON.stringify(gemini.requests.map((r) => r.body));
    assert.match(told, /refused by the egress proxy/, 'the run result named the refusal');
    assert.match(told, /rejected by local admin: work offline/, 'the agent was told the human refused');
    await recordHistory(stack.client, id, 'llm-network-refused-pending-review');
    await decide(id, review, { action: 'reject' });
    await ended(id);
  });

  it('asks a human once per domain: the agent asking again, in another spelling, is told the refusal stands', async () => {
    gemini.script([
      { text: '1. Ask for the mirror\n2. Finish', usage },
      { calls: [{ name: 'request_network', args: { domain: MIRROR, reason: 'to read the package metadata' } }], usage },
      { calls: [{ name: 'request_network', args: { domain: `${MIRROR.toUpperCase()}.`, reason: 'really, I need it' } }], usage },
      { calls: [{ name: 'request_network', args: { domain: `*.${MIRROR}`, reason: 'or any name below it' } }], usage },
      { calls: [{ name: 'finish', args: { summary: 'Nothing to do.', risks: 'none', how_to_test: 'none' } }], usage },
    ]);
    const id = await submit({ policy: { egress_allowlist: [REGISTRY] }, planner: { kind: 'llm', model: 'gemini-2.5-flash', check_commands: [] } });
    const ask = await nextItem(id, ['risky_action', 'pr_review', 'health_alert']);
    assert.equal(ask.kind, 'risky_action', ask.title);
    await decide(id, ask, { action: 'reject', comment: 'no' });
    const t = await eventually(
      () => task(id),
      (v) => ENDED_STATES.includes(v.state) || v.items.some((i: any) => i.status === 'pending'),
      `${id} to end or ask again`,
      60_000,
    );
    assert.deepEqual(t.items.map((i: any) => i.kind), ['risky_action'], `the agent's second ask reached the inbox: ${JSON.stringify(t.items.map((i: any) => i.title))}`);
    const told = gemini.requests.map((r) => JSON.stringify(r.body)).join('\n');
    assert.match(told, /local admin already refused mirror\.test for this task/);
    assert.match(told, /ask for one domain, not a wildcard/);
  });
});
