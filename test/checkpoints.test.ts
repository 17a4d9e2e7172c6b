/**
 * Checkpoints another worker restores: two workers' activities on their own data directories, one artifact store.
 * A task moves from one to the other with its tree, a release can be retried, a lost bundle write is made good on
 * the retry, and nothing of an old copy survives a restore over it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { createActivities } from '../activities';
import { ArtifactStore } from '../activities/artifacts/store';
import { CHECKPOINT_BUNDLE } from '../activities/checkpoint';
import { gitDirOf, snapshotTree } from '../activities/git/workspace';
import { ProcessSandboxDriver } from '../activities/sandbox/process';
import type { Activities, ProvisionResult } from '../activities/types';
import type { Logger } from '../workers/log';
import { git, makeOriginRepo, tempDir } from './support/git-fixture';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A store whose next bundle writes fail, as a worker dying between its git work and the store would leave it. */
class FlakyStore extends ArtifactStore {
  failBundles = 0;
  override async put(taskId: string, name: string, data: string | Buffer): Promise<{ ref: string; bytes: number }> {
    if (name === CHECKPOINT_BUNDLE && this.failBundles > 0) {
      this.failBundles--;
      throw new Error('the store went away');
    }
    return super.put(taskId, name, data);
  }
}

let root: string;
let origin: string;
let store: FlakyStore;
const workers: Record<'a' | 'b', { acts: Activities; dataDir: string }> = {} as never;
let n = 0;

function worker(name: 'a' | 'b') {
  const dataDir = path.join(root, name);
  return { dataDir, acts: createActivities({ sandbox: new ProcessSandboxDriver({ root: path.join(dataDir, 'sandboxes'), log: quiet }), artifacts: store, dataDir, log: quiet }) };
}

async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(() => null, (e: unknown) => e);
  assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
  return err;
}

function provision(w: 'a' | 'b', taskId: string, restore?: { base_commit: string; checkpoint: string }): Promise<ProvisionResult> {
  return workers[w].acts.provisionSandbox({ task_id: taskId, repo: origin, base_branch: 'main', ...(restore ? { restore: { ...restore, branch: null, commit: null } } : {}) });
}

function step(w: 'a' | 'b', taskId: string, p: ProvisionResult, checkpoint: string, command: string, index: number) {
  return workers[w].acts.runStep({ task_id: taskId, sandbox: p.sandbox, index, round: 1, command, timeout_seconds: 30, checkpoint, env: {} });
}

before(() => {
  root = tempDir('checkpoints');
  origin = makeOriginRepo(root, { 'README.md': '# demo\n', 'src/a.txt': 'a\n', '.gitignore': 'node_modules/\n' });
  store = new FlakyStore(path.join(root, 'shared-artifacts'));
  workers.a = worker('a');
  workers.b = worker('b');
});

describe('checkpoints in the shared artifact store', () => {
  it("restore a task's tree on a worker that never saw it, on its base commit, after the base branch moved on", async () => {
    const id = `t-${process.pid}-${++n}`;
    const p = await provision('a', id);
    const one = await step('a', id, p, p.checkpoint, 'echo one > one.txt && rm src/a.txt', 0);
    const two = await step('a', id, p, one.checkpoint, 'echo two >> one.txt && mkdir -p deep/er && echo x > deep/er/x', 1);
    // Someone else's work lands on main meanwhile.
    const next = git(origin, 'commit-tree', 'main^{tree}', '-p', 'main', '-m', 'Later work');
    git(origin, 'update-ref', 'refs/heads/main', next);

    for (const checkpoint of [one.checkpoint, two.checkpoint]) {
      const again = await provision('b', id, { base_commit: p.base_commit, checkpoint });
      const dir = again.sandbox.hostWorkdir;
      assert.equal(dir, path.join(workers.b.dataDir, 'workspaces', id));
      assert.equal(await snapshotTree(dir), checkpoint, 'the same tree, exactly');
      assert.equal(git(dir, `--git-dir=${gitDirOf(dir)}`, 'rev-parse', 'HEAD'), p.base_commit, 'on the task’s own base commit');
      assert.equal(again.base_commit, p.base_commit);
    }
    assert.equal(fs.readFileSync(path.join(workers.b.dataDir, 'workspaces', id, 'deep/er/x'), 'utf8'), 'x\n');
  });

  it('fail as CheckpointLost, without retry, for a tree in no bundle', async () => {
    const id = `t-${process.pid}-${++n}`;
    const p = await provision('a', id);
    const f = await failureOf(provision('b', id, { base_commit: p.base_commit, checkpoint: '0123456789abcdef0123456789abcdef01234567' }));
    assert.equal(f.type, 'CheckpointLost');
    assert.equal(f.nonRetryable, true);
  });

  it('are written again by a retried step whose first attempt lost the bundle write', async () => {
    const id = `t-${process.pid}-${++n}`;
    const p = await provision('a', id);
    store.failBundles = 1;
    await assert.rejects(step('a', id, p, p.checkpoint, 'echo once > once.txt', 0), /the store went away/);
    const retried = await step('a', id, p, p.checkpoint, 'echo once > once.txt', 0);
    const again = await provision('b', id, { base_commit: p.base_commit, checkpoint: retried.checkpoint });
    assert.equal(await snapshotTree(again.sandbox.hostWorkdir), retried.checkpoint);
  });

  it('let a release be retried, and leave nothing of the sandbox or the copy behind', async () => {
    const id = `t-${process.pid}-${++n}`;
    const p = await provision('a', id);
    const one = await step('a', id, p, p.checkpoint, 'echo kept > kept.txt', 0);
    await workers.a.acts.releaseSandbox({ task_id: id, sandbox: p.sandbox, checkpoint: one.checkpoint });
    await workers.a.acts.releaseSandbox({ task_id: id, sandbox: p.sandbox, checkpoint: one.checkpoint });
    assert.equal(fs.existsSync(p.sandbox.hostWorkdir), false);
    assert.equal(fs.existsSync(path.join(workers.a.dataDir, 'sandboxes', id)), false);
    const back = await provision('a', id, { base_commit: p.base_commit, checkpoint: one.checkpoint });
    assert.equal(fs.readFileSync(path.join(back.sandbox.hostWorkdir, 'kept.txt'), 'utf8'), 'kept\n');
  });

  it('start from a fresh copy when restoring over an old one: nothing the old sandbox left outside the checkpoint survives', async () => {
    const id = `t-${process.pid}-${++n}`;
    const p = await provision('a', id);
    // Ignored paths are no part of any checkpoint: a command could leave anything there (a rejected one included).
    const one = await step('a', id, p, p.checkpoint, 'mkdir -p node_modules/.bin && echo planted > node_modules/.bin/tool && echo kept > kept.txt', 0);
    assert.ok(fs.existsSync(path.join(p.sandbox.hostWorkdir, 'node_modules/.bin/tool')));
    const back = await provision('a', id, { base_commit: p.base_commit, checkpoint: one.checkpoint });
    assert.equal(fs.existsSync(path.join(back.sandbox.hostWorkdir, 'node_modules')), false, 'the old copy is gone');
    assert.equal(fs.readFileSync(path.join(back.sandbox.hostWorkdir, 'kept.txt'), 'utf8'), 'kept\n');
    assert.equal(await snapshotTree(back.sandbox.hostWorkdir), one.checkpoint);
    await workers.a.acts.teardownSandbox({ task_id: id, sandbox: back.sandbox });
  });
});
