/**
 * The activities on real git and real processes: a bare origin in a temp directory,
 * the process sandbox driver and the artifact store, called without a Temporal worker.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { createActivities } from '../activities';
import { ArtifactNotFoundError, ArtifactStore, InvalidArtifactNameError } from '../activities/artifacts/store';
import { gitDirOf, restoreTree, snapshotTree } from '../activities/git/workspace';
import { ProcessSandboxDriver, SandboxPathError } from '../activities/sandbox/process';
import type { SandboxHandle } from '../activities/sandbox/driver';
import type { Activities, ProvisionResult } from '../activities/types';
import type { Logger } from '../workers/log';
import { branchCommit, git, makeOriginRepo, tempDir } from './support/git-fixture';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const FILES = {
  'README.md': '# demo\n',
  'src/a.txt': 'a\n',
  'src/b.txt': 'b\n',
  '.gitignore': 'node_modules/\n',
  '.agent/policy.yaml': 'protected_paths:\n  - "infra/**"\nrequire_plan_approval: true\n',
  'AGENTS.md': '# Notes for agents\n',
};

let root: string;
let origin: string;
let dataDir: string;
let driver: ProcessSandboxDriver;
let artifacts: ArtifactStore;
let acts: Activities;
let taskCounter = 0;

function nextTaskId(): string {
  return `task-${process.pid}-${++taskCounter}`;
}

function provision(taskId: string, repo = origin, base = 'main'): Promise<ProvisionResult> {
  return acts.provisionSandbox({ task_id: taskId, repo, base_branch: base });
}

function step(taskId: string, p: { sandbox: SandboxHandle; checkpoint: string }, command: string, index = 0, timeout = 30) {
  return acts.runStep({ task_id: taskId, sandbox: p.sandbox, index, round: 1, command, timeout_seconds: timeout, checkpoint: p.checkpoint, env: {} });
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a failure');
}

before(() => {
  root = tempDir('activities');
  origin = makeOriginRepo(root, FILES);
  dataDir = path.join(root, 'data');
  driver = new ProcessSandboxDriver({ root: path.join(dataDir, 'sandboxes'), log: quiet });
  artifacts = new ArtifactStore(path.join(dataDir, 'artifacts'));
  acts = createActivities({ sandbox: driver, artifacts, dataDir, log: quiet });
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('provisionSandbox', () => {
  it('clones the base branch, reads the repo policy and re-attaches on a second call', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    assert.equal(p.base_commit, git(origin, 'rev-parse', 'main'));
    assert.deepEqual(p.repo_policy?.protected_paths, ['infra/**']);
    assert.equal(p.repo_policy?.require_plan_approval, true);
    assert.equal(p.has_agents_md, true);
    assert.equal(p.sandbox.isolation, 'none');
    assert.equal(p.sandbox.hostWorkdir, path.join(dataDir, 'workspaces', id));
    assert.equal(fs.readFileSync(path.join(p.sandbox.hostWorkdir, 'src/a.txt'), 'utf8'), 'a\n');
    const again = await provision(id);
    assert.deepEqual(again, p);
  });

  it('fails without retry when the policy is not valid YAML or breaks the schema, naming the field', async () => {
    const badSchema = makeOriginRepo(path.join(root, 'bad-schema'), { '.agent/policy.yaml': 'approval_commands:\n  - "("\n' });
    const f1 = await failureOf(provision(nextTaskId(), badSchema));
    assert.equal(f1.type, 'InvalidRepoPolicy');
    assert.equal(f1.nonRetryable, true);
    assert.match(f1.message, /approval_commands\.0: not a valid regular expression/);

    const badYaml = makeOriginRepo(path.join(root, 'bad-yaml'), { '.agent/policy.yaml': 'protected_paths: [unclosed\n' });
    const f2 = await failureOf(provision(nextTaskId(), badYaml));
    assert.equal(f2.type, 'InvalidRepoPolicy');
    assert.match(f2.message, /not valid YAML/);
  });

  it('fails without retry when the repository or the branch does not exist, leaving no half clone', async () => {
    const f1 = await failureOf(provision(nextTaskId(), path.join(root, 'no-such-repo')));
    assert.equal(f1.type, 'RepoUnavailable');
    assert.equal(f1.nonRetryable, true);
    const id = nextTaskId();
    const f2 = await failureOf(provision(id, origin, 'no-such-branch'));
    assert.equal(f2.type, 'RepoUnavailable');
    assert.match(f2.message, /no-such-branch/);
    assert.deepEqual(fs.readdirSync(path.join(dataDir, 'workspaces')).filter((n) => n.includes(id)), []);
  });
});

describe('runStep', () => {
  it('reports the paths a step added, modified and deleted, and keeps its output', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    const res = await step(id, p, 'echo new > added.txt && echo more >> README.md && rm src/a.txt && echo done && exit 3');
    assert.equal(res.exit_code, 3);
    assert.equal(res.timed_out, false);
    assert.deepEqual(res.changed_paths, ['README.md', 'added.txt', 'src/a.txt']);
    assert.notEqual(res.checkpoint, p.checkpoint);
    assert.equal(res.output_preview, 'done\n');
    assert.equal(res.output.ref, `artifact://${id}/step-1-0.log`);
    assert.equal((await artifacts.read(res.output.ref)).toString(), 'done\n');
  });

  it('sees a same-size edit made in the second the clone wrote its index, snapshotted a second later', async () => {
    // Git compares whole seconds of stat data; an edit that keeps the size in the index's own second looks unchanged
    // unless the snapshot's copy of the index keeps the index's mtime (so git re-hashes such "racy" entries).
    let raced = 0;
    for (let i = 0; i < 10 && raced < 3; i++) {
      const id = nextTaskId();
      const p = await provision(id);
      const file = path.join(p.sandbox.hostWorkdir, 'src/a.txt');
      fs.writeFileSync(file, 'b\n');
      const indexSecond = Math.floor(fs.statSync(path.join(gitDirOf(p.sandbox.hostWorkdir), 'index')).mtimeMs / 1000);
      if (Math.floor(fs.statSync(file).ctimeMs / 1000) !== indexSecond) continue;
      raced += 1;
      await sleep(1_000 - (Date.now() % 1_000) + 10);
      assert.notEqual(await snapshotTree(p.sandbox.hostWorkdir), p.checkpoint, 'the edit is in the snapshot');
    }
    assert.ok(raced > 0, 'the edit landed in the index\'s second at least once');
  });

  it('restores the checkpoint exactly before running a step whose earlier attempt half ran', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    const dir = p.sandbox.hostWorkdir;
    const first = await step(id, p, 'echo one > one.txt && mkdir -p node_modules && echo dep > node_modules/dep.js');
    // What a crashed attempt of the next step might leave behind.
    fs.writeFileSync(path.join(dir, 'stray.txt'), 'stray\n');
    fs.appendFileSync(path.join(dir, 'README.md'), 'half-written\n');
    fs.rmSync(path.join(dir, 'src/b.txt'));
    fs.rmSync(path.join(dir, 'one.txt'));
    fs.mkdirSync(path.join(dir, 'deep/er'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'deep/er/file.txt'), 'x');
    fs.renameSync(path.join(dir, 'src'), path.join(dir, 'src-moved'));
    fs.writeFileSync(path.join(dir, 'src'), 'a file where a directory was\n');

    const retry = await step(id, { sandbox: p.sandbox, checkpoint: first.checkpoint }, 'cat README.md', 1);
    assert.equal(retry.checkpoint, first.checkpoint);
    assert.deepEqual(retry.changed_paths, []);
    assert.equal(retry.output_preview, '# demo\n');
    assert.equal(fs.readFileSync(path.join(dir, 'src/a.txt'), 'utf8'), 'a\n');
    assert.equal(fs.readFileSync(path.join(dir, 'src/b.txt'), 'utf8'), 'b\n');
    assert.equal(fs.readFileSync(path.join(dir, 'one.txt'), 'utf8'), 'one\n');
    for (const gone of ['stray.txt', 'deep', 'src-moved']) assert.equal(fs.existsSync(path.join(dir, gone)), false, gone);
    // Ignored files are not part of a checkpoint and survive a restore (dependencies installed by earlier steps).
    assert.equal(fs.readFileSync(path.join(dir, 'node_modules/dep.js'), 'utf8'), 'dep\n');
    assert.ok(fs.statSync(path.join(gitDirOf(dir), 'HEAD')).isFile());
    assert.equal(fs.existsSync(path.join(dir, '.git')), false, 'the repository lives outside the working copy');

    // And back to the pristine tree: the step's own additions go too.
    await restoreTree(dir, p.checkpoint);
    assert.equal(await snapshotTree(dir), p.checkpoint);
    assert.equal(fs.existsSync(path.join(dir, 'one.txt')), false);
    assert.equal(git(dir, '--git-dir', gitDirOf(dir), 'rev-parse', 'HEAD'), p.base_commit);
  });

  it('ends a step with what it left running, so nothing changes the tree after the step', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    const started = Date.now();
    const res = await step(id, p, '(sleep 1; echo late >> late.txt) & echo started');
    assert.ok(Date.now() - started < 1_000, 'the step returns without waiting for its background child');
    assert.equal(res.output_preview, 'started\n');
    assert.equal(fs.existsSync(path.join(dataDir, 'sandboxes', id, 'pids')), false);
    await sleep(1_300);
    assert.equal(fs.existsSync(path.join(p.sandbox.hostWorkdir, 'late.txt')), false);
  });

  it('leaves a background process of a plain command running until killAll, which a restarted worker can still do', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    const res = await driver.exec(p.sandbox, '(sleep 1; echo late >> late.txt) & echo started', { timeoutMs: 10_000, maxOutputBytes: 4096 });
    assert.equal(res.output, 'started\n');
    const pids = path.join(dataDir, 'sandboxes', id, 'pids');
    assert.equal(fs.readFileSync(pids, 'utf8').trim().split('\n').length, 1);

    // A new driver over the same root stands in for a worker restarted after kill -9.
    const restarted = new ProcessSandboxDriver({ root: path.join(dataDir, 'sandboxes'), log: quiet });
    await restarted.killAll(p.sandbox);
    assert.equal(fs.existsSync(pids), false);
    await sleep(1_300);
    assert.equal(fs.existsSync(path.join(p.sandbox.hostWorkdir, 'late.txt')), false);
  });

});

describe('ProcessSandboxDriver', () => {
  let handle: SandboxHandle;
  before(async () => {
    const p = await provision(nextTaskId());
    handle = p.sandbox;
  });

  it('kills the whole process group when a command times out', async () => {
    const res = await driver.exec(handle, '(sleep 1; echo late > timeout.txt) & sleep 10', { timeoutMs: 300, maxOutputBytes: 1_000 });
    assert.equal(res.timedOut, true);
    assert.equal(res.exitCode, 124);
    assert.ok(res.durationMs < 2_000);
    await sleep(1_200);
    assert.equal(fs.existsSync(path.join(handle.hostWorkdir, 'timeout.txt')), false);
  });

  it('kills the command and rejects with an AbortError when the signal fires', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await assert.rejects(driver.exec(handle, 'sleep 10', { timeoutMs: 10_000, maxOutputBytes: 1_000, signal: ac.signal }), { name: 'AbortError' });
  });

  it('keeps the last maxOutputBytes of output and counts what it cut', async () => {
    const res = await driver.exec(handle, "head -c 5000 /dev/zero | tr '\\0' a; echo END >&2", { timeoutMs: 10_000, maxOutputBytes: 1_000 });
    assert.equal(res.exitCode, 0);
    assert.equal(res.output.length, 1_000);
    assert.ok(res.output.endsWith('aEND\n'));
    assert.equal(res.outputTruncatedBytes, 5_004 - 1_000);
  });

  it('runs commands with a scrubbed environment, a private HOME and the variables asked for', async () => {
    process.env.AGENT_INBOX_TEST_SECRET = 'do-not-leak';
    try {
      const res = await driver.exec(handle, 'env', { timeoutMs: 10_000, maxOutputBytes: 100_000, env: { STEP_VAR: 'yes' } });
      assert.doesNotMatch(res.output, /AGENT_INBOX_TEST_SECRET/);
      assert.match(res.output, /^STEP_VAR=yes$/m);
      assert.match(res.output, new RegExp(`^HOME=${path.join(dataDir, 'sandboxes', handle.id, 'home')}$`, 'm'));
      assert.match(res.output, /^CI=1$/m);
    } finally {
      delete process.env.AGENT_INBOX_TEST_SECRET;
    }
  });

  it('refuses to read or write outside the working copy, symlinks included', async () => {
    const outside = path.join(root, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(path.join(outside, 'secret'), 'secret');
    fs.symlinkSync(outside, path.join(handle.hostWorkdir, 'link'));
    await assert.rejects(driver.readFile(handle, '../x'), SandboxPathError);
    await assert.rejects(driver.readFile(handle, '/etc/hostname'), SandboxPathError);
    await assert.rejects(driver.readFile(handle, 'link/secret'), SandboxPathError);
    await assert.rejects(driver.writeFile(handle, 'link/sub/new.txt', 'x'), SandboxPathError);
    assert.equal(fs.existsSync(path.join(outside, 'sub')), false);
    await driver.writeFile(handle, 'notes/ok.txt', 'fine');
    assert.equal(await driver.readFile(handle, 'notes/ok.txt'), 'fine');
  });
});

describe('publishOutput and deleteBranch', () => {
  it('pushes one commit however often it is called, then reports no change until the tree changes', async () => {
    const id = nextTaskId();
    const branch = `agent/${id}`;
    const p = await provision(id);
    const done = await step(id, p, 'echo feature > feature.txt && rm src/b.txt');
    const input = { task_id: id, sandbox: p.sandbox, repo: origin, base_commit: p.base_commit, round: 1, message: 'Add feature', tree: done.checkpoint };

    const first = await acts.publishOutput(input);
    assert.equal(first.changed, true);
    assert.equal(first.branch, branch);
    assert.equal(first.files_changed, 2);
    assert.match(first.diff_preview, /\+feature/);
    const again = await acts.publishOutput(input);
    assert.equal(again.commit, first.commit);
    assert.equal(again.changed, true);
    assert.equal(branchCommit(origin, branch), first.commit);
    assert.equal(git(origin, 'rev-list', '--count', `main..${branch}`), '1');
    assert.equal(git(origin, 'log', '-1', '--format=%an <%ae>', branch), 'Agent Inbox <agent@agent-inbox.local>');
    assert.match(git(origin, 'log', '-1', '--format=%B', branch), /^Add feature\n\nAgent-Task: .+\nAgent-Round: 1$/);

    const unchanged = await acts.publishOutput({ ...input, round: 2 });
    assert.equal(unchanged.changed, false);
    assert.equal(unchanged.commit, first.commit);
    assert.equal(unchanged.files_changed, 2);

    await acts.deleteBranch({ repo: origin, branch });
    assert.equal(branchCommit(origin, branch), null);
    await acts.deleteBranch({ repo: origin, branch });
    const refused = await failureOf(acts.deleteBranch({ repo: origin, branch: 'main' }));
    assert.equal(refused.type, 'InvalidInput');
    assert.ok(branchCommit(origin, 'main'));
  });

  it('reports no change and pushes nothing when the working copy equals the base', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    const res = await acts.publishOutput({ task_id: id, sandbox: p.sandbox, repo: origin, base_commit: p.base_commit, round: 1, message: 'x', tree: p.checkpoint });
    assert.deepEqual(res, { changed: false, branch: `agent/${id}`, commit: null, stat: '', diff_preview: '', diff: null, files_changed: 0 });
    assert.equal(branchCommit(origin, `agent/${id}`), null);
  });
});

describe('diffCheckpoints, archiveTrace and teardownSandbox', () => {
  it('diffs two checkpoints limited to the paths asked for', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    const res = await step(id, p, 'mkdir -p infra && echo x > infra/main.tf && echo y > other.txt');
    const d = await acts.diffCheckpoints({ task_id: id, sandbox: p.sandbox, from: p.checkpoint, to: res.checkpoint, paths: ['infra/main.tf'], name: 'protected-1-0' });
    assert.equal(d.files_changed, 1);
    assert.match(d.stat, /infra\/main\.tf/);
    assert.doesNotMatch(d.preview, /other\.txt/);
    assert.equal((await artifacts.read(d.diff.ref)).toString(), d.preview);
  });

  it('appends trace entries as JSON lines, once each even when an append is retried or torn', async () => {
    const id = nextTaskId();
    await acts.archiveTrace({ task_id: id, first_index: 0, entries: [{ type: 'a' }, { type: 'b' }] });
    await acts.archiveTrace({ task_id: id, first_index: 0, entries: [{ type: 'a' }, { type: 'b' }] });
    await artifacts.append(id, 'trace.jsonl', '{"type":"c"');
    await acts.archiveTrace({ task_id: id, first_index: 2, entries: [{ type: 'c' }, { type: 'd' }] });
    await acts.archiveTrace({ task_id: id, first_index: 3, entries: [{ type: 'd' }, { type: 'e' }] });
    const lines = (await artifacts.readByName(id, 'trace.jsonl')).toString().trim().split('\n');
    assert.deepEqual(lines.map((l) => JSON.parse(l).type), ['a', 'b', 'c', 'd', 'e']);
  });

  it('removes the sandbox and the working copy, and succeeds when they are already gone', async () => {
    const id = nextTaskId();
    const p = await provision(id);
    await step(id, p, '(sleep 5) & true');
    assert.ok((await driver.list()).includes(id));
    await acts.teardownSandbox({ task_id: id, sandbox: null });
    assert.equal(fs.existsSync(path.join(dataDir, 'sandboxes', id)), false);
    assert.equal(fs.existsSync(p.sandbox.hostWorkdir), false);
    assert.equal((await driver.list()).includes(id), false);
    await acts.teardownSandbox({ task_id: id, sandbox: p.sandbox });
  });
});

describe('ArtifactStore', () => {
  it('refuses names that could leave its directory and reports missing artifacts by type', async () => {
    await assert.rejects(artifacts.put('t', '../escape', 'x'), InvalidArtifactNameError);
    await assert.rejects(artifacts.put('..', 'x', 'x'), InvalidArtifactNameError);
    await assert.rejects(artifacts.put('t', '.hidden', 'x'), InvalidArtifactNameError);
    await assert.rejects(artifacts.read('artifact://t/a/b'), InvalidArtifactNameError);
    await assert.rejects(artifacts.read('artifact://t/missing.log'), ArtifactNotFoundError);
    const ref = await artifacts.put('t', 'one.log', 'hello');
    assert.deepEqual(ref, { ref: 'artifact://t/one.log', bytes: 5 });
    assert.deepEqual(await artifacts.list('t'), [{ name: 'one.log', ref: 'artifact://t/one.log', bytes: 5 }]);
    assert.deepEqual(await artifacts.list('nobody'), []);
  });

  it('reads an append-only artifact a piece at a time', async () => {
    assert.deepEqual(await artifacts.readFrom('t2', 'log.jsonl', 0), { data: Buffer.alloc(0), size: 0 });
    await artifacts.append('t2', 'log.jsonl', 'one\n');
    const first = await artifacts.readFrom('t2', 'log.jsonl', 0);
    assert.equal(first.data.toString(), 'one\n');
    await artifacts.append('t2', 'log.jsonl', 'two\n');
    const next = await artifacts.readFrom('t2', 'log.jsonl', first.size);
    assert.deepEqual({ text: next.data.toString(), size: next.size }, { text: 'two\n', size: 8 });
    assert.equal((await artifacts.readFrom('t2', 'log.jsonl', 8)).data.length, 0);
  });
});
