/**
 * The gVisor driver on real runsc: every command runs inside a gVisor sandbox. Called through
 * the real activities (clone, checkpoints, restore) on a real git origin, without a Temporal worker.
 *
 * runsc must be installed (`npm run setup`, which `.ci/run` calls); without it this suite fails.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createActivities } from '../activities';
import { ArtifactStore } from '../activities/artifacts/store';
import { gitDirOf, snapshotTree } from '../activities/git/workspace';
import type { ExecOptions, SandboxHandle } from '../activities/sandbox/driver';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import type { Activities } from '../activities/types';
import type { Logger } from '../workers/log';
import { resolveRunsc } from '../workers/sandbox';
import { makeOriginRepo, tempDir } from './support/git-fixture';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const run = (timeoutMs = 30_000, extra: Partial<ExecOptions> = {}): ExecOptions => ({ timeoutMs, maxOutputBytes: 64 * 1024, ...extra });

let runsc: string;
let root: string;
let origin: string;
let dataDir: string;
let driver: GvisorSandboxDriver;
let acts: Activities;
let counter = 0;
const opened: string[] = [];

function driverOver(logs?: string[]): GvisorSandboxDriver {
  const log: Logger = logs ? { ...quiet, info: (msg) => void logs.push(msg), warn: (msg) => void logs.push(msg) } : quiet;
  return new GvisorSandboxDriver({
    root: path.join(dataDir, 'sandboxes'),
    runsc,
    log,
    limits: { memoryMb: 512, processesPerCommand: 64, tmpMb: 64 },
  });
}

async function provision(): Promise<{ id: string; sandbox: SandboxHandle; checkpoint: string }> {
  const id = `gv-${process.pid}-${++counter}`;
  opened.push(id);
  const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main' });
  return { id, sandbox: p.sandbox, checkpoint: p.checkpoint };
}

describe('gVisor sandbox driver', () => {
  before(async () => {
    const found = await resolveRunsc();
    assert.ok(found, 'runsc is not installed: run `npm run setup` (bash scripts/install-runsc.sh)');
    runsc = found;
    root = tempDir('gvisor-');
    origin = makeOriginRepo(root, { 'README.md': '# demo\n', 'src/a.txt': 'a\n', '.gitignore': 'node_modules/\n' });
    dataDir = path.join(root, 'data');
    driver = driverOver();
    acts = createActivities({ sandbox: driver, artifacts: new ArtifactStore(path.join(dataDir, 'artifacts')), dataDir, log: quiet });
  });

  after(async () => {
    for (const id of opened) await acts.teardownSandbox({ task_id: id, sandbox: null }).catch(() => undefined);
    await driver.releaseHost();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('runs a command as an unprivileged user and returns its exit code and output, with none of the worker\'s environment', async () => {
    process.env.AGENT_INBOX_TEST_SECRET = 'do-not-leak';
    const { sandbox } = await provision();
    assert.equal(sandbox.driver, 'gvisor');
    assert.equal(sandbox.isolation, 'gvisor');
    const res = await driver.exec(sandbox, 'echo out; echo err >&2; id -u; printenv AGENT_INBOX_TEST_SECRET || echo no-secret; echo "$GREETING"; exit 3', run(30_000, { env: { GREETING: 'hi' } }));
    assert.equal(res.exitCode, 3);
    assert.equal(res.timedOut, false);
    assert.deepEqual(res.output.split('\n').sort(), ['', '65534', 'err', 'hi', 'no-secret', 'out'].sort());
    // The kernel the command sees is gVisor's, not the host's.
    const dmesg = await driver.exec(sandbox, 'cat /proc/version', run());
    assert.notEqual(dmesg.output.trim(), fs.readFileSync('/proc/version', 'utf8').trim());
  });

  it('lets a command write only its working copy and /tmp; git sees the repository read-only', async () => {
    const { id, sandbox, checkpoint } = await provision();
    const res = await driver.exec(
      sandbox,
      [
        'for f in /usr/x /etc/x /x /workspace.git/config; do (echo x > "$f") 2>/dev/null && echo "wrote $f"; done',
        'echo ok > /workspace/new.txt && echo ok > /tmp/t && echo wrote-allowed',
        'git status --porcelain',
        'git config core.fsmonitor "touch /tmp/pwned" 2>/dev/null && echo config-written || echo config-refused',
        'ls -l /workspace/README.md >/dev/null && echo ls-ok',
      ].join('\n'),
      run(),
    );
    assert.equal(res.exitCode, 0, res.output);
    assert.doesNotMatch(res.output, /wrote \//);
    assert.match(res.output, /wrote-allowed/);
    assert.match(res.output, /\?\? new\.txt/);
    assert.match(res.output, /config-refused/);
    assert.match(res.output, /ls-ok/);
    // The host sees the file, and a checkpoint picks it up.
    const host = path.join(dataDir, 'workspaces', id);
    assert.equal(fs.readFileSync(path.join(host, 'new.txt'), 'utf8'), 'ok\n');
    assert.notEqual(await snapshotTree(host), checkpoint);
    assert.equal(fs.existsSync(path.join(host, '.git')), false);
    assert.ok(fs.existsSync(path.join(gitDirOf(host), 'HEAD')));
  });

  it('has no network: neither a listener on the host\'s loopback nor an outside address is reachable', async () => {
    const server = net.createServer((s) => s.end('hello from the host\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const { sandbox } = await provision();
      // 192.0.2.1 is TEST-NET-1 (documentation only); with no interface but loopback nothing is ever sent.
      const probe = `
const net = require('net');
const tryConnect = (host, port) => new Promise((resolve) => {
  const s = net.connect({ host, port, timeout: 3000 });
  s.on('connect', () => { s.destroy(); resolve('connected'); });
  s.on('timeout', () => { s.destroy(); resolve('timeout'); });
  s.on('error', (e) => resolve(e.code));
});
(async () => {
  console.log('loopback', await tryConnect('127.0.0.1', ${port}));
  console.log('outside', await tryConnect('192.0.2.1', 443));
  console.log('ifaces', Object.keys(require('os').networkInterfaces()).join(','));
})();`;
      await driver.writeFile(sandbox, 'probe.js', probe);
      const res = await driver.exec(sandbox, 'node probe.js', run());
      assert.equal(res.exitCode, 0, res.output);
      const lines = Object.fromEntries(res.output.trim().split('\n').map((l) => l.split(' ') as [string, string]));
      assert.notEqual(lines.loopback, 'connected');
      assert.notEqual(lines.outside, 'connected');
      assert.equal(lines.ifaces, 'lo');
    } finally {
      server.close();
    }
  });

  it('contains a fork bomb and a memory hog, keeps serving commands, and still tears down', async () => {
    const { id, sandbox } = await provision();
    // The bomb hits the process limit ("Cannot fork") instead of the host; its timeout kills what it made.
    const bomb = await driver.exec(sandbox, 'f() { f | f & }; f; sleep 30', run(4_000));
    assert.equal(bomb.timedOut, true);
    assert.match(bomb.output, /Cannot fork/);
    const after = await driver.exec(sandbox, 'echo alive', run());
    assert.equal(after.output.trim(), 'alive', JSON.stringify({ bomb: bomb.output.slice(-300), after }));

    const hog = await driver.exec(sandbox, 'node -e "const a=[]; for (;;) a.push(Buffer.alloc(64<<20, 1))"', run(30_000));
    assert.notEqual(hog.exitCode, 0, 'the memory hog did not get all it asked for');
    const again = await driver.exec(sandbox, 'echo alive', run());
    assert.equal(again.output.trim(), 'alive', JSON.stringify({ hog: { ...hog, output: hog.output.slice(-300) }, again }));

    await acts.teardownSandbox({ task_id: id, sandbox });
    assert.ok(!(await driver.list()).includes(id));
    assert.equal(fs.existsSync(path.join(dataDir, 'sandboxes', id)), false);
  });

  it('kills a command at its timeout or on cancellation, with everything it started', async () => {
    const { sandbox } = await provision();
    const started = Date.now();
    const slow = await driver.exec(sandbox, '(sleep 60; echo late > late.txt) & sleep 60', run(1_000));
    assert.equal(slow.timedOut, true);
    assert.equal(slow.exitCode, 124);
    assert.ok(Date.now() - started < 10_000);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 500);
    await assert.rejects(driver.exec(sandbox, 'sleep 60', run(60_000, { signal: ac.signal })), { name: 'AbortError' });
    const ps = await driver.exec(sandbox, 'ps -e -o stat=,comm= | grep -v ^Z | grep -c sleep || true', run());
    assert.equal(ps.output.trim(), '0');
  });

  it('re-attaches a restarted worker to the live sandbox, whose killAll then stops what the old one started', async () => {
    const { id, sandbox } = await provision();
    const bg = await driver.exec(sandbox, '(sleep 30 &) ; echo started', run());
    assert.equal(bg.output.trim(), 'started');

    // A new driver over the same root stands in for a worker restarted after kill -9.
    const logs: string[] = [];
    const restarted = driverOver(logs);
    const again = await restarted.provision({ id, hostWorkdir: sandbox.hostWorkdir });
    assert.ok(logs.includes('sandbox re-attached'), logs.join(', '));
    const ps = await restarted.exec(again, 'ps -e -o stat=,comm= | grep -v ^Z | grep -c sleep || true', run());
    assert.equal(ps.output.trim(), '1', 'the live sandbox, not a new one');
    await restarted.killAll(again);
    const after = await restarted.exec(again, 'ps -e -o stat=,comm= | grep -v ^Z | grep -c sleep || true', run());
    assert.equal(after.output.trim(), '0');

    assert.ok((await restarted.list()).includes(id));
    await restarted.teardown(again);
    assert.ok(!(await restarted.list()).includes(id));
    // Tearing down what is gone already succeeds.
    await restarted.teardown(again);
  });

  it('restores a checkpoint on retry and hands the restored files back to the sandbox user', async () => {
    const { id, sandbox, checkpoint } = await provision();
    const first = await acts.runStep({ task_id: id, sandbox, index: 0, round: 1, command: 'echo one > one.txt', timeout_seconds: 30, checkpoint, env: {} });
    // What a crashed attempt might leave: a stray file, and the worker restoring files as root.
    await driver.exec(sandbox, 'echo stray > stray.txt; rm README.md', run());
    const retry = await acts.runStep({ task_id: id, sandbox, index: 1, round: 1, command: 'echo more >> README.md && cat one.txt', timeout_seconds: 30, checkpoint: first.checkpoint, env: {} });
    assert.equal(retry.exit_code, 0, retry.output_preview);
    assert.equal(retry.output_preview, 'one\n');
    assert.deepEqual(retry.changed_paths, ['README.md']);
  });
});
