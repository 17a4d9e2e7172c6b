/**
 * The trust boundary between a hostile gVisor sandbox and the worker that runs it as root, on real
 * runsc: the worker's file I/O cannot be redirected to host files, a command runs once whatever it
 * prints, and what a sandbox writes is bounded.
 *
 * runsc must be installed (`npm run setup`, which `.ci/run` calls); without it this suite fails.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment, defaultActivityInfo } from '@temporalio/testing';
import { createActivities } from '../activities';
import { checkpointAfter } from '../activities/checkpoint';
import { gitDirOf } from '../activities/git/workspace';
import { ArtifactStore } from '../activities/artifacts/store';
import type { ExecOptions, SandboxHandle } from '../activities/sandbox/driver';
import { UnsafeFileError } from '../activities/sandbox/safe-fs';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import type { Activities, RunStepResult } from '../activities/types';
import type { Logger } from '../workers/log';
import { resolveRunsc } from '../workers/sandbox';
import { makeOriginRepo, tempDir } from './support/git-fixture';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const run = (timeoutMs = 30_000, extra: Partial<ExecOptions> = {}): ExecOptions => ({ timeoutMs, maxOutputBytes: 64 * 1024, ...extra });
/** Small disks, so a test can fill one; files as large as the disks allow sparse ones (the 4 GiB test). */
const SUITE_LIMITS = { memoryMb: 512, processesPerCommand: 64, tmpMb: 64, diskMb: 64, diskInodes: 20_000, fileSizeMb: 8_192 };
/** File-tool calls made while the sandbox swaps a directory for a link to the host. */
const RACING_CALLS = 2_000;
/** Checkpoints taken while the sandbox swaps a directory git reads. */
const CHECKPOINTS_RACED = 200;

let root: string;
let origin: string;
let dataDir: string;
let runscPath: string;
let driver: GvisorSandboxDriver;
let acts: Activities;
let counter = 0;
const opened: string[] = [];

async function provision(): Promise<{ id: string; sandbox: SandboxHandle; checkpoint: string }> {
  const id = `sb-${process.pid}-${++counter}`;
  opened.push(id);
  const p = await acts.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main' });
  return { id, sandbox: p.sandbox, checkpoint: p.checkpoint };
}

describe('sandbox trust boundary (gVisor)', () => {
  before(async () => {
    const runsc = await resolveRunsc();
    assert.ok(runsc, 'runsc is not installed: run `npm run setup` (bash scripts/install-runsc.sh)');
    runscPath = runsc;
    root = tempDir('boundary-');
    origin = makeOriginRepo(root, { 'README.md': '# demo\n', 'd/keep.txt': 'inside\n' });
    dataDir = path.join(root, 'data');
    driver = new GvisorSandboxDriver({ root: path.join(dataDir, 'sandboxes'), runsc, log: quiet, limits: SUITE_LIMITS });
    acts = createActivities({ sandbox: driver, artifacts: new ArtifactStore(path.join(dataDir, 'artifacts')), dataDir, log: quiet });
  });

  after(async () => {
    for (const id of opened) await acts.teardownSandbox({ task_id: id, sandbox: null });
    await driver.releaseHost();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('never lets a directory swapped for a link to the host redirect the worker\'s reads and writes', async () => {
    const { sandbox } = await provision();
    // A host directory only root may read, holding a secret with the same name as a file of the working copy.
    const host = path.join(root, 'host-only');
    fs.mkdirSync(host, { mode: 0o700 });
    fs.writeFileSync(path.join(host, 'keep.txt'), 'HOST SECRET\n', { mode: 0o600 });
    // Left running by the agent: swaps d/ (read from) and w/ (written to) between a real directory and a link to
    // the host directory, in a tight loop. A w/ the worker made while it was away is moved aside.
    const swapper = `chdir "/workspace" or die; my $n = 0; mkdir "w";
while (1) {
  for my $d ("d", "w") {
    rename $d, "$d.dir"; symlink "${host}", $d; unlink $d;
    rename("$d.dir", $d) or do { rename $d, "$d.old" . $n++; rename "$d.dir", $d };
  }
}`;
    await driver.writeFile(sandbox, 'swap.pl', swapper);
    const started = await driver.exec(sandbox, 'setsid perl swap.pl >/dev/null 2>&1 < /dev/null & echo started', run());
    assert.equal(started.output.trim(), 'started');

    let leaked = 0;
    let reads = 0;
    let writes = 0;
    try {
      for (let i = 0; i < RACING_CALLS / 2; i++) {
        try {
          const text = await driver.readFile(sandbox, 'd/keep.txt');
          reads++;
          if (text.includes('HOST SECRET')) leaked++;
        } catch {
          // Refused or not there at that instant: both are fine.
        }
        try {
          await driver.writeFile(sandbox, `w/out-${i}.txt`, 'from the worker\n');
          writes++;
        } catch {
          // Refused: fine.
        }
      }
    } finally {
      await driver.killAll(sandbox);
    }
    const landed = fs.readdirSync(host).filter((f) => f.startsWith('out-'));
    assert.deepEqual({ leaked, landed: landed.length }, { leaked: 0, landed: 0 }, `reads=${reads} writes=${writes}`);
    // The race was real: the calls did reach the working copy's side of the swap.
    assert.ok(reads > 0 && writes > 0, `reads=${reads} writes=${writes}`);
    assert.equal(fs.readFileSync(path.join(host, 'keep.txt'), 'utf8'), 'HOST SECRET\n');
  });

  it('freezes the sandbox while the worker\'s git takes a checkpoint, so a swapped directory cannot feed it host files', async () => {
    const { id, sandbox } = await provision();
    const host = path.join(root, 'host-for-git');
    fs.mkdirSync(host, { mode: 0o700 });
    fs.writeFileSync(path.join(host, 'keep.txt'), 'HOST SECRET FOR GIT\n', { mode: 0o600 });
    const swapper = `chdir "/workspace" or die; my $n = 0;
while (1) {
  mkdir "g.new"; open(my $f, ">", "g.new/keep.txt"); print $f "inside " . $n++ . "\\n"; close $f;
  rename "g", "g.old"; rename "g.new", "g"; system("rm", "-rf", "g.old") if $n % 50 == 0;
  rename "g", "g.dir"; symlink "${host}", "g"; unlink "g"; rename "g.dir", "g";
}`;
    await driver.writeFile(sandbox, 'swap-git.pl', swapper);
    const started = await driver.exec(sandbox, 'setsid perl swap-git.pl >/dev/null 2>&1 < /dev/null & echo started', run());
    assert.equal(started.output.trim(), 'started');
    const dir = sandbox.hostWorkdir;
    const trees = new Set<string>();
    // Unfrozen, git's own lstat-then-open races too: snapshots fail, or take the host file.
    const failures: string[] = [];
    try {
      for (let i = 0; i < CHECKPOINTS_RACED; i++) {
        try {
          trees.add(await checkpointAfter(driver, sandbox, dir));
        } catch (err) {
          failures.push(String(err).slice(0, 200));
        }
      }
    } finally {
      await driver.killAll(sandbox);
    }
    const leaked = [...trees].filter((tree) => execFileSync('git', ['--git-dir', gitDirOf(dir), 'ls-tree', '-r', tree], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.endsWith('\tg/keep.txt'))
      .some((l) => execFileSync('git', ['--git-dir', gitDirOf(dir), 'cat-file', 'blob', l.split(/\s+/)[2]!], { encoding: 'utf8' }).includes('HOST SECRET')));
    assert.deepEqual({ leaked: leaked.length, failed: failures.length }, { leaked: 0, failed: 0 }, `${trees.size} checkpoints of task ${id}; ${failures[0] ?? ''}`);
    assert.ok(trees.size > 1, 'the swapper changed the tree between checkpoints');
  });

  it('refuses FIFOs, hard links and oversized files at once, without blocking on them', async () => {
    const { sandbox } = await provision();
    const made = await driver.exec(sandbox, 'ln d/keep.txt twin && truncate -s 20M sparse && echo made', run());
    assert.equal(made.output.trim(), 'made', made.output);
    // gVisor keeps a FIFO made inside to itself; the worker's copy can still hold one (a pod's archive, the process driver).
    execFileSync('mkfifo', [path.join(sandbox.hostWorkdir, 'pipe')]);
    await assert.rejects(driver.readFile(sandbox, 'pipe'), (e: unknown) => e instanceof UnsafeFileError && e.reason === 'not_regular');
    await assert.rejects(driver.writeFile(sandbox, 'pipe', 'x'), (e: unknown) => e instanceof UnsafeFileError && e.reason === 'not_regular');
    await assert.rejects(driver.writeFile(sandbox, 'twin', 'x'), (e: unknown) => e instanceof UnsafeFileError && e.reason === 'hard_linked');
    await assert.rejects(driver.readFile(sandbox, 'sparse'), (e: unknown) => e instanceof UnsafeFileError && e.reason === 'too_large');
    assert.equal(await driver.readFile(sandbox, 'README.md'), '# demo\n');
  });

  it('runs a failing command once even when it prints what runsc prints for a dead sandbox', async () => {
    const { sandbox } = await provision();
    await driver.exec(sandbox, 'echo kept > /tmp/marker', run());
    const res = await driver.exec(
      sandbox,
      'echo ran >> runs.txt; echo "cannot execute in container"; echo "container x is not running"; echo "connecting to control server"; echo "state stopped"; exit 1',
      run(),
    );
    assert.equal(res.exitCode, 1);
    assert.equal(fs.readFileSync(path.join(sandbox.hostWorkdir, 'runs.txt'), 'utf8'), 'ran\n');
    // Nor was the sandbox torn down: what the earlier command left in its private /tmp is still there.
    const after = await driver.exec(sandbox, 'cat /tmp/marker', run());
    assert.equal(after.output.trim(), 'kept');
  });

  it('never starts a sandbox again behind a teardown that raced a running command', async () => {
    const { id, sandbox } = await provision();
    const running = driver.exec(sandbox, 'sleep 30', run(60_000));
    await new Promise((r) => setTimeout(r, 1_000));
    // A teardown at its worst moment for the command: the sandbox's directory is gone before runsc reports the command's end.
    fs.rmSync(path.join(dataDir, 'sandboxes', id), { recursive: true, force: true });
    execFileSync(runscPath, ['--root', path.join(dataDir, 'sandboxes', '.runsc'), 'delete', '--force', `${id}+`]);
    const res = await running.catch((err: unknown) => err);
    assert.ok(!(res instanceof Error) || res.name === 'SandboxTornDownError', String(res));
    assert.ok(!(await driver.list()).includes(id), 'the torn-down sandbox was started again');
    assert.equal(fs.existsSync(path.join(dataDir, 'sandboxes', id)), false);
  });

  it('starts a sandbox that died between commands again and runs the next command once', async () => {
    const { id, sandbox } = await provision();
    const stateRoot = path.join(dataDir, 'sandboxes', '.runsc');
    await new Promise<void>((resolve, reject) =>
      execFile(runscPath, ['--root', stateRoot, 'kill', `${id}+`, 'KILL'], (err) => (err ? reject(err) : resolve())),
    );
    for (let i = 0; i < 100 && (await runscState(stateRoot, id)) === 'running'; i++) await new Promise((r) => setTimeout(r, 50));
    const res = await driver.exec(sandbox, 'echo ran >> runs.txt; cat runs.txt | wc -l', run());
    assert.equal(res.exitCode, 0, res.output);
    assert.equal(res.output.trim(), '1');
  });

  it('answers a retried step from its record: a step that ended is not run again', async () => {
    const { id, sandbox, checkpoint } = await provision();
    // The first attempt's worker dies after the command ended, while it writes the step's log.
    const store = new (class extends ArtifactStore {
      failed = false;
      override async put(taskId: string, name: string, content: string | Buffer) {
        if (name.startsWith('step-') && !this.failed) {
          this.failed = true;
          throw new Error('worker died here');
        }
        return super.put(taskId, name, content);
      }
    })(path.join(dataDir, 'artifacts'));
    const dying = createActivities({ sandbox: driver, artifacts: store, dataDir, log: quiet });
    const input = { task_id: id, sandbox, index: 0, round: 1, command: 'echo ran >> runs.txt; echo approved-and-run', timeout_seconds: 30, checkpoint, env: {} };
    const info = { ...defaultActivityInfo, activityId: '7', workflowExecution: { workflowId: id, runId: 'run-1' } };
    await assert.rejects(new MockActivityEnvironment({ ...info, attempt: 1 }).run(dying.runStep, input), /worker died here/);
    const retried: RunStepResult = await new MockActivityEnvironment({ ...info, attempt: 2 }).run(dying.runStep, input);
    assert.equal(retried.exit_code, 0);
    assert.equal(retried.output_preview, 'approved-and-run\n');
    assert.equal(fs.readFileSync(path.join(sandbox.hostWorkdir, 'runs.txt'), 'utf8'), 'ran\n');
    assert.deepEqual(retried.changed_paths, ['runs.txt']);
    // A new scheduling of the same step (a human asked to retry it) is a new activity and runs again.
    const again: RunStepResult = await new MockActivityEnvironment({ ...info, activityId: '9', attempt: 1 }).run(dying.runStep, { ...input, checkpoint: retried.checkpoint });
    assert.equal(again.exit_code, 0);
    assert.equal(fs.readFileSync(path.join(sandbox.hostWorkdir, 'runs.txt'), 'utf8'), 'ran\nran\n');
  });

  it('ends what a recipe step left running, so nothing changes the tree after the step\'s checkpoint', async () => {
    const { id, sandbox, checkpoint } = await provision();
    const step = await acts.runStep({
      task_id: id,
      sandbox,
      index: 0,
      round: 1,
      command: '(sleep 1; echo late > late.txt) > /dev/null 2>&1 & setsid sh -c "sleep 2; echo later > later.txt" > /dev/null 2>&1 < /dev/null & echo on-time > on-time.txt',
      timeout_seconds: 30,
      checkpoint,
      env: {},
    });
    assert.deepEqual(step.changed_paths, ['on-time.txt']);
    const ps = await driver.exec(sandbox, 'sleep 3; ls; ps -e -o comm= | grep -c sleep || true', run());
    assert.doesNotMatch(ps.output, /late/);
    assert.match(ps.output.trim(), /\n0$/);
  });

  it('stops a sandbox that fills its disk at its quota, saying so, while another task goes on', async () => {
    const a = await provision();
    const b = await provision();
    const [fill, other] = await Promise.all([
      driver.exec(a.sandbox, 'dd if=/dev/zero of=fill bs=1M count=200', run(60_000)),
      acts.runStep({ task_id: b.id, sandbox: b.sandbox, index: 0, round: 1, command: 'echo ok > ok.txt && echo done', timeout_seconds: 30, checkpoint: b.checkpoint, env: {} }),
    ]);
    assert.notEqual(fill.exitCode, 0);
    assert.match(fill.output, /No space left on device/);
    assert.match(fill.output, /the working copy's disk is full: its quota is 64 MB/);
    assert.equal(other.exit_code, 0);
    assert.deepEqual(other.changed_paths, ['ok.txt']);
    // What the full disk takes on the host is the quota, not what the command asked for.
    const image = path.join(dataDir, 'sandboxes', a.id, 'workspace.img');
    assert.ok(fs.statSync(image).blocks * 512 <= 70 * 1024 * 1024, `${fs.statSync(image).blocks * 512} bytes`);
    const freed = await driver.exec(a.sandbox, 'rm fill && echo alive', run());
    assert.equal(freed.output.trim(), 'alive');
  });

  it('limits the size of any file a command writes (RLIMIT_FSIZE)', async () => {
    const small = new GvisorSandboxDriver({ root: path.join(dataDir, 'sandboxes'), runsc: runscPath, log: quiet, limits: { ...SUITE_LIMITS, fileSizeMb: 8 } });
    const smallActs = createActivities({ sandbox: small, artifacts: new ArtifactStore(path.join(dataDir, 'artifacts')), dataDir, log: quiet });
    const id = `sb-${process.pid}-${++counter}`;
    opened.push(id);
    const { sandbox } = await smallActs.provisionSandbox({ task_id: id, repo: origin, base_branch: 'main' });
    const res = await small.exec(sandbox, 'dd if=/dev/zero of=/tmp/big bs=1M count=16 2>&1; echo tmp=$?; dd if=/dev/zero of=big bs=1M count=16 2>&1; echo ws=$?; wc -c < /tmp/big', run());
    // SIGXFSZ (25) stops the writer at the limit.
    assert.match(res.output, /File size limit exceeded/);
    assert.match(res.output, /tmp=153/);
    assert.match(res.output, /ws=153/);
    assert.equal(res.output.trim().split('\n').at(-1), String(8 * 1024 * 1024));
    await small.teardown(sandbox);
  });

  it('refuses to checkpoint a 4 GiB sparse file, with a message naming it, instead of hashing it', async () => {
    const { id, sandbox, checkpoint } = await provision();
    await assert.rejects(
      acts.runStep({ task_id: id, sandbox, index: 0, round: 1, command: 'truncate -s 4G big.bin', timeout_seconds: 30, checkpoint, env: {} }),
      (err: unknown) => err instanceof ApplicationFailure && err.type === 'SandboxLimit' && /big\.bin is 4294967296 bytes/.test(err.message),
    );
    // The next step starts from the checkpoint again, without the file.
    const next = await acts.runStep({ task_id: id, sandbox, index: 1, round: 1, command: 'ls', timeout_seconds: 30, checkpoint, env: {} });
    assert.doesNotMatch(next.output_preview, /big\.bin/);
  });
});

async function runscState(stateRoot: string, id: string): Promise<string | null> {
  return new Promise((resolve) =>
    execFile(runscPath, ['--root', stateRoot, 'state', `${id}+`], (err, stdout) => resolve(err ? null : (JSON.parse(stdout) as { status: string }).status)),
  );
}
