/**
 * The coding agent's sandbox tools on real drivers over a real git working copy: every tool on the
 * process driver, and the file, command, search and diff tools inside a real gVisor sandbox.
 *
 * runsc must be installed (`npm run setup`); without it the gVisor suite fails, as test/gvisor.test.ts does.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clone } from '../activities/git/workspace';
import {
  CONTROL_TOOLS,
  NotASandboxToolError,
  SANDBOX_TOOLS,
  TOOL_DECLARATIONS,
  executeSandboxTool,
  validateToolArgs,
  type SandboxToolOptions,
  type SandboxToolResult,
} from '../activities/llm/tools';
import type { SandboxDriver, SandboxHandle } from '../activities/sandbox/driver';
import { GvisorSandboxDriver } from '../activities/sandbox/gvisor';
import { ProcessSandboxDriver } from '../activities/sandbox/process';
import type { Logger } from '../workers/log';
import { resolveRunsc } from '../workers/sandbox';
import { makeOriginRepo, tempDir } from './support/git-fixture';

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const OPTS: SandboxToolOptions = { maxOutputChars: 20_000, defaultTimeoutSeconds: 20, maxTimeoutSeconds: 60 };

const FILES = {
  'README.md': '# demo\n',
  'src/app.ts': "import { add } from './util/math';\n\nconsole.log(add(1, 2));\n",
  'src/util/math.ts': 'export function add(a: number, b: number): number {\n  return a + b;\n}\n',
  'src/util/deep/leaf.txt': 'leaf\n',
  'docs/guide.md': '# Guide\n\nTODO: write the guide\n',
  'lines.txt': Array.from({ length: 30 }, (_, i) => `line ${i + 1}`).join('\n') + '\n',
  'dup.txt': 'foo = 1\nbar = 2\nfoo = 1\n',
  '.gitignore': 'node_modules/\ndist/\n',
};

let root: string;
let origin: string;
let copies = 0;

/** A fresh clone of the origin (its repository outside the work tree, as the activities make them). */
async function workingCopy(): Promise<string> {
  const dir = path.join(root, 'work', `wc-${++copies}`);
  await clone(origin, 'main', dir);
  return dir;
}

function tooling(driver: SandboxDriver, handle: () => SandboxHandle) {
  return (name: string, args: unknown, opts: Partial<SandboxToolOptions> = {}): Promise<SandboxToolResult> =>
    executeSandboxTool(driver, handle(), name, args, { ...OPTS, ...opts });
}

before(() => {
  root = tempDir('llm-tools');
  origin = makeOriginRepo(root, FILES);
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('sandbox tools on the process driver', () => {
  let driver: ProcessSandboxDriver;
  let handle: SandboxHandle;
  let dir: string;
  const tool = (name: string, args: unknown, opts?: Partial<SandboxToolOptions>) => tooling(driver, () => handle)(name, args, opts);

  before(async () => {
    dir = await workingCopy();
    // An installed dependency: shown by list_dir but not expanded, never searched.
    fs.mkdirSync(path.join(dir, 'node_modules', 'pkg'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'node_modules', 'pkg', 'index.js'), 'module.exports = "TODO in a dependency";\n');
    driver = new ProcessSandboxDriver({ root: path.join(root, 'sandboxes'), log: quiet });
    handle = await driver.provision({ id: `llm-tools-${process.pid}`, hostWorkdir: dir });
  });

  after(async () => {
    await driver.teardown(handle);
  });

  it('list_dir lists one level by default and descends to the depth asked, marking directories', async () => {
    const top = await tool('list_dir', {});
    assert.equal(top.ok, true, top.output);
    const entries = top.output.trim().split('\n');
    for (const e of ['README.md', 'src/', 'docs/', 'lines.txt', '.gitignore', 'node_modules/ (not expanded)']) assert.ok(entries.includes(e), `${e} in\n${top.output}`);
    assert.ok(!entries.includes('src/app.ts'));

    const two = await tool('list_dir', { depth: 2 });
    const twoEntries = two.output.trim().split('\n');
    assert.ok(twoEntries.includes('src/app.ts') && twoEntries.includes('src/util/'), two.output);
    assert.ok(!twoEntries.includes('src/util/math.ts'));
    assert.ok(!two.output.includes('node_modules/pkg'));

    const sub = await tool('list_dir', { path: './src/', depth: 3 });
    assert.deepEqual(sub.output.trim().split('\n'), ['src/app.ts', 'src/util/', 'src/util/deep/', 'src/util/deep/leaf.txt', 'src/util/math.ts']);

    const missing = await tool('list_dir', { path: 'nope' });
    assert.equal(missing.ok, false);
    assert.match(missing.output, /no such directory: nope/);
    const file = await tool('list_dir', { path: 'README.md' });
    assert.equal(file.ok, false);
    assert.match(file.output, /is a file, not a directory: read it with read_file/);
  });

  it('read_file shows numbered lines, whole or a 1-based inclusive range, and explains a missing file', async () => {
    const whole = await tool('read_file', { path: 'src/util/math.ts' });
    assert.deepEqual(whole, {
      ok: true,
      output: '   1| export function add(a: number, b: number): number {\n   2|   return a + b;\n   3| }',
      truncated: false,
    });

    const range = await tool('read_file', { path: 'lines.txt', start_line: 12, end_line: 14 });
    assert.equal(range.ok, true);
    assert.equal(range.output, '  12| line 12\n  13| line 13\n  14| line 14\n\n[lines 12-14 of 30]');

    const clamped = await tool('read_file', { path: 'lines.txt', start_line: 29, end_line: 99 });
    assert.match(clamped.output, /^ {2}29\| line 29\n {2}30\| line 30\n\n\[lines 29-30 of 30\]$/);

    const past = await tool('read_file', { path: 'lines.txt', start_line: 31 });
    assert.equal(past.ok, false);
    assert.match(past.output, /lines\.txt has 30 lines; start_line 31 is past its end/);

    const missing = await tool('read_file', { path: 'src/missing.ts' });
    assert.equal(missing.ok, false);
    assert.match(missing.output, /no such file: src\/missing\.ts; use list_dir or search/);

    const directory = await tool('read_file', { path: 'src' });
    assert.equal(directory.ok, false);
    assert.match(directory.output, /src is a directory/);
  });

  it('search finds a regular expression, limited by path and glob, skipping node_modules', async () => {
    const all = await tool('search', { pattern: 'add\\(|TODO' });
    assert.equal(all.ok, true, all.output);
    // Sorted by path, then line.
    assert.deepEqual(all.output.split('\n'), [
      'docs/guide.md:3:TODO: write the guide',
      "src/app.ts:3:console.log(add(1, 2));",
      'src/util/math.ts:1:export function add(a: number, b: number): number {',
    ]);

    const md = await tool('search', { pattern: 'TODO|add', glob: '*.md' });
    assert.equal(md.output.trim(), 'docs/guide.md:3:TODO: write the guide');

    const under = await tool('search', { pattern: '^export', path: 'src/util' });
    assert.equal(under.output.trim(), 'src/util/math.ts:1:export function add(a: number, b: number): number {');

    const capped = await tool('search', { pattern: 'line [0-9]+', path: 'lines.txt', max_results: 5 });
    assert.equal(capped.ok, true);
    assert.equal(capped.output.split('\n').filter((l) => l.startsWith('lines.txt:')).length, 5);
    assert.match(capped.output, /\[25 more matching lines not shown; narrow the pattern, path or glob, or raise max_results/);

    const none = await tool('search', { pattern: 'no such text anywhere' });
    assert.deepEqual(none, { ok: true, output: 'no matches for "no such text anywhere" in the repository', truncated: false });

    const bad = await tool('search', { pattern: 'a(b' });
    assert.equal(bad.ok, false);
    assert.match(bad.output, /parenthes|unmatched|regex/i);
  });

  it('write_file creates the file and its directories and reports the path it wrote', async () => {
    const res = await tool('write_file', { path: 'new/deep/./notes.md', content: 'one\ntwo\n' });
    assert.deepEqual(res, { ok: true, output: 'wrote new/deep/notes.md: 2 lines, 8 bytes', truncated: false, wrote: ['new/deep/notes.md'], wrote_blob: res.wrote_blob });
    // The id git gives the blob: what a checkpoint holds when nothing else rewrote the file.
    assert.equal(res.wrote_blob, execFileSync('git', ['hash-object', '--stdin'], { input: 'one\ntwo\n' }).toString().trim());
    assert.equal(fs.readFileSync(path.join(dir, 'new', 'deep', 'notes.md'), 'utf8'), 'one\ntwo\n');
    const onto = await tool('write_file', { path: 'src', content: 'x' });
    assert.equal(onto.ok, false);
    assert.match(onto.output, /src is a directory/);
  });

  it('edit_file replaces a unique string, refuses a non-unique or missing one, and replaces all when asked', async () => {
    const unique = await tool('edit_file', { path: 'src/util/math.ts', old_string: '  return a + b;', new_string: '  return a + b + 0; // $& stays literal' });
    assert.equal(unique.ok, true, unique.output);
    assert.deepEqual(unique.wrote, ['src/util/math.ts']);
    assert.match(unique.output, /^replaced 1 occurrence in src\/util\/math\.ts\n/);
    assert.match(unique.output, / {3}2\| {3}return a \+ b \+ 0; \/\/ \$& stays literal/);
    assert.equal(fs.readFileSync(path.join(dir, 'src/util/math.ts'), 'utf8'), 'export function add(a: number, b: number): number {\n  return a + b + 0; // $& stays literal\n}\n');

    const twice = await tool('edit_file', { path: 'dup.txt', old_string: 'foo = 1', new_string: 'foo = 2' });
    assert.equal(twice.ok, false);
    assert.equal(twice.wrote, undefined);
    assert.match(twice.output, /old_string occurs 2 times in dup\.txt \(at lines 1, 3\); nothing was changed\. Add surrounding lines/);
    assert.equal(fs.readFileSync(path.join(dir, 'dup.txt'), 'utf8'), FILES['dup.txt']);

    const missing = await tool('edit_file', { path: 'dup.txt', old_string: 'baz = 3', new_string: 'baz = 4' });
    assert.equal(missing.ok, false);
    assert.match(missing.output, /old_string was not found in dup\.txt; nothing was changed/);
    const spacing = await tool('edit_file', { path: 'dup.txt', old_string: 'bar  =  2', new_string: 'bar = 3' });
    assert.match(spacing.output, /different whitespace or indentation/);

    const all = await tool('edit_file', { path: 'dup.txt', old_string: 'foo = 1', new_string: 'foo = 2', replace_all: true });
    assert.equal(all.ok, true, all.output);
    assert.match(all.output, /^replaced 2 occurrences in dup\.txt/);
    assert.equal(fs.readFileSync(path.join(dir, 'dup.txt'), 'utf8'), 'foo = 2\nbar = 2\nfoo = 2\n');

    const empty = await tool('edit_file', { path: 'dup.txt', old_string: '', new_string: 'x' });
    assert.equal(empty.ok, false);
    assert.match(empty.output, /old_string: must not be empty/);
    const noFile = await tool('edit_file', { path: 'nope.txt', old_string: 'a', new_string: 'b' });
    assert.equal(noFile.ok, false);
    assert.match(noFile.output, /no such file: nope\.txt \(create it with write_file\)/);
  });

  it('run returns the output and exit code, and kills a command at its timeout, capped by the task', async () => {
    const res = await tool('run', { command: 'echo out; echo err >&2; exit 3' });
    assert.equal(res.ok, false);
    assert.equal(res.exit_code, 3);
    assert.equal(res.timed_out, false);
    assert.match(res.output, /out\n/);
    assert.match(res.output, /err\n/);
    assert.match(res.output, /\[exit code 3\]$/);

    const good = await tool('run', { command: 'cat README.md' });
    assert.deepEqual(good, { ok: true, output: '# demo\n[exit code 0]', truncated: false, exit_code: 0, timed_out: false });

    const started = Date.now();
    const slow = await tool('run', { command: 'echo starting; sleep 30', timeout_seconds: 1 });
    assert.equal(slow.ok, false);
    assert.equal(slow.timed_out, true);
    assert.equal(slow.exit_code, 124);
    assert.match(slow.output, /^starting\n\[exit code 124 \(timed out after 1 s\)\]$/);
    // The model asked for an hour; the task allows one second.
    const capped = await tool('run', { command: 'sleep 30', timeout_seconds: 3_600 }, { maxTimeoutSeconds: 1 });
    assert.match(capped.output, /timed out after 1 s/);
    assert.ok(Date.now() - started < 6_000);
  });

  it('git_diff shows a modified tracked file and an untracked one, limited to a path', async () => {
    const fresh = await workingCopy();
    const h = await driver.provision({ id: `llm-tools-diff-${process.pid}`, hostWorkdir: fresh });
    const t = tooling(driver, () => h);
    try {
      const clean = await t('git_diff', {});
      assert.deepEqual(clean, { ok: true, output: 'no changes: the working copy matches the last commit', truncated: false });

      await t('edit_file', { path: 'README.md', old_string: '# demo', new_string: '# demo, edited' });
      await t('write_file', { path: 'notes/new.md', content: 'brand new\n' });
      const res = await t('git_diff', {});
      assert.equal(res.ok, true, res.output);
      assert.match(res.output, /^ M README\.md$/m);
      assert.match(res.output, /^\?\? notes\/new\.md$/m);
      assert.match(res.output, /^-# demo$/m);
      assert.match(res.output, /^\+# demo, edited$/m);
      assert.match(res.output, /^\+\+\+ b\/notes\/new\.md$/m);
      assert.match(res.output, /^\+brand new$/m);

      const only = await t('git_diff', { path: 'notes' });
      assert.match(only.output, /\+brand new/);
      assert.doesNotMatch(only.output, /README/);
      const none = await t('git_diff', { path: 'src' });
      assert.equal(none.output, 'no changes under src: the working copy matches the last commit');
    } finally {
      await driver.teardown(h);
    }
  });

  it('cuts long output to maxOutputChars, keeping head and tail, with a note saying how to see more', async () => {
    const run = await tool('run', { command: 'seq 1 5000' }, { maxOutputChars: 1_000 });
    assert.equal(run.truncated, true);
    assert.ok(run.output.length <= 1_000, `${run.output.length}`);
    assert.ok(run.output.startsWith('1\n2\n3\n'));
    assert.match(run.output, /4999\n5000\n\[exit code 0\]$/);
    assert.match(run.output, /\n\[… \d+ characters cut; rerun the command with its output filtered .* …\]\n/);
    const kept = run.output.split('\n').filter((l) => /^\d+$/.test(l)).length;
    const cut = Number(/\[… (\d+) characters cut/.exec(run.output)![1]);
    // What was kept and what was cut add up to seq's output.
    const full = Array.from({ length: 5000 }, (_, i) => `${i + 1}\n`).join('');
    assert.ok(kept > 50, `${kept}`);
    assert.equal(run.output.replace(/\[exit code 0\]$/, '').length - /\[… .* …\]\n?/.exec(run.output)![0].length + cut, full.length);

    const read = await tool('read_file', { path: 'lines.txt' }, { maxOutputChars: 300 });
    assert.equal(read.truncated, true);
    assert.ok(read.output.length <= 300);
    assert.match(read.output, /^ {3}1\| line 1\n/);
    assert.match(read.output, /use read_file with start_line\/end_line, or search, to see a part/);
    assert.match(read.output, / {2}30\| line 30$/);

    const search = await tool('search', { pattern: 'line', path: 'lines.txt' }, { maxOutputChars: 250 });
    assert.equal(search.truncated, true);
    assert.match(search.output, /narrow the pattern, path or glob, or lower max_results, to see a part/);

    const list = await tool('list_dir', { depth: 3 }, { maxOutputChars: 150 });
    assert.equal(list.truncated, true);
    assert.match(list.output, /list a subdirectory, or use a smaller depth, to see a part/);
  });

  it('refuses paths outside the working copy: parent escapes, absolute paths and symbolic links leading out', async () => {
    const outside = path.join(root, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(path.join(outside, 'secret.txt'), 'secret\n');
    fs.symlinkSync(outside, path.join(dir, 'out-dir'));
    fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(dir, 'out-file'));

    const parent = await tool('read_file', { path: '../x' });
    assert.equal(parent.ok, false);
    assert.match(parent.output, /path leaves the repository \("\.\.\/x"\)/);
    const sneaky = await tool('write_file', { path: 'src/../../x', content: 'x' });
    assert.match(sneaky.output, /path leaves the repository/);
    const absolute = await tool('read_file', { path: '/etc/passwd' });
    assert.equal(absolute.ok, false);
    assert.match(absolute.output, /path is absolute \("\/etc\/passwd"\); give it relative to the repository root/);

    for (const [name, args] of [
      ['read_file', { path: 'out-file' }],
      ['read_file', { path: 'out-dir/secret.txt' }],
      ['write_file', { path: 'out-file', content: 'pwned\n' }],
      ['write_file', { path: 'out-dir/new.txt', content: 'pwned\n' }],
      ['edit_file', { path: 'out-file', old_string: 'secret', new_string: 'pwned' }],
      ['list_dir', { path: 'out-dir' }],
      ['search', { pattern: 'secret', path: 'out-dir' }],
      ['git_diff', { path: 'out-dir' }],
    ] as const) {
      const res = await tool(name, args);
      assert.equal(res.ok, false, `${name} ${JSON.stringify(args)}: ${res.output}`);
      assert.match(res.output, /outside the working copy/, `${name} ${JSON.stringify(args)}`);
      // Nothing of the file outside leaks into the answer.
      assert.doesNotMatch(res.output, /^secret$|:\d+:secret/m);
    }
    assert.equal(fs.readFileSync(path.join(outside, 'secret.txt'), 'utf8'), 'secret\n');
    assert.equal(fs.existsSync(path.join(outside, 'new.txt')), false);
  });

  it('reports the real file when a write goes through a symbolic link inside the working copy', async () => {
    fs.symlinkSync('docs/guide.md', path.join(dir, 'guide-link.md'));
    const res = await tool('edit_file', { path: 'guide-link.md', old_string: 'TODO: write the guide', new_string: 'Written.' });
    assert.equal(res.ok, true, res.output);
    assert.deepEqual(res.wrote, ['docs/guide.md']);
    assert.match(res.output, /through a symbolic link: the file written is docs\/guide\.md/);
  });

  it('rejects with an AbortError when cancelled, and refuses control tools, which belong to the workflow', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await assert.rejects(tool('run', { command: 'sleep 10' }, { signal: ac.signal }), { name: 'AbortError' });
    await assert.rejects(tool('read_file', { path: 'README.md' }, { signal: AbortSignal.abort() }), { name: 'AbortError' });
    await assert.rejects(tool('finish', { summary: 's', risks: 'r', how_to_test: 't' }), NotASandboxToolError);
    const unknown = await tool('delete_repo', {});
    assert.equal(unknown.ok, false);
    assert.match(unknown.output, /unknown tool "delete_repo"; the tools are list_dir, read_file/);
  });
});

describe('tool declarations and validateToolArgs', () => {
  it('declares every tool with a strict object schema whose required fields exist', () => {
    assert.deepEqual(
      TOOL_DECLARATIONS.map((d) => d.name),
      [...SANDBOX_TOOLS, ...CONTROL_TOOLS],
    );
    for (const d of TOOL_DECLARATIONS) {
      const p = d.parameters as { type: string; properties: Record<string, { description?: string }>; required: string[]; additionalProperties: boolean };
      assert.equal(p.type, 'object', d.name);
      assert.equal(p.additionalProperties, false, d.name);
      assert.ok(d.description.length > 20, d.name);
      for (const r of p.required) assert.ok(r in p.properties, `${d.name}.${r}`);
      for (const [k, v] of Object.entries(p.properties)) assert.ok((v.description ?? '').length > 5, `${d.name}.${k} has a description`);
    }
  });

  it('accepts good arguments, normalising paths and filling defaults', () => {
    const cases: [string, unknown, unknown][] = [
      ['list_dir', {}, { path: '.', depth: 1 }],
      ['list_dir', { path: './src//util/', depth: 3 }, { path: 'src/util', depth: 3 }],
      ['read_file', { path: 'src/../README.md', start_line: 2, end_line: 2 }, { path: 'README.md', start_line: 2, end_line: 2 }],
      ['search', { pattern: 'foo.*bar', glob: '*.ts' }, { pattern: 'foo.*bar', glob: '*.ts', path: '.', max_results: 100 }],
      ['write_file', { path: 'a/b.txt', content: '' }, { path: 'a/b.txt', content: '' }],
      ['edit_file', { path: 'a.txt', old_string: 'x', new_string: '' }, { path: 'a.txt', old_string: 'x', new_string: '', replace_all: false }],
      ['run', { command: 'npm test', timeout_seconds: 600 }, { command: 'npm test', timeout_seconds: 600 }],
      ['git_diff', {}, { path: '.' }],
      ['ask_human', { question: 'Which branch?' }, { question: 'Which branch?' }],
      ['request_approval', { action: 'rm -rf dist', reason: 'stale build' }, { action: 'rm -rf dist', reason: 'stale build' }],
      ['finish', { summary: 'done', risks: 'none known', how_to_test: 'npm test' }, { summary: 'done', risks: 'none known', how_to_test: 'npm test' }],
    ];
    for (const [name, args, expected] of cases) {
      const res = validateToolArgs(name, args);
      assert.ok(res.ok, `${name}: ${res.ok ? '' : res.error}`);
      assert.equal(res.name, name);
      assert.deepEqual(res.args, expected, name);
    }
  });

  it('refuses bad arguments with a message naming the field and the rule', () => {
    const cases: [string, unknown, RegExp][] = [
      ['list_dir', null, /expected a JSON object, got null/],
      ['list_dir', [], /expected a JSON object, got an array/],
      ['list_dir', { depth: 4 }, /depth: must be at most 3, got 4/],
      ['list_dir', { depth: 0 }, /depth: must be at least 1, got 0/],
      ['list_dir', { depth: 1.5 }, /depth: must be an integer, got the number 1\.5/],
      ['list_dir', { recursive: true }, /unknown field "recursive" \(allowed: path, depth\)/],
      ['read_file', {}, /path: required/],
      ['read_file', { path: 'a', start_line: '3' }, /start_line: must be an integer, got a string \("3"\)/],
      ['read_file', { path: 'a', start_line: 5, end_line: 2 }, /end_line \(2\) is before start_line \(5\)/],
      ['read_file', { path: '.' }, /path must name a file/],
      ['read_file', { path: '/etc/passwd' }, /path is absolute/],
      ['search', { pattern: '' }, /pattern: must not be empty/],
      ['search', { pattern: 'a\nb' }, /pattern: must be a single line/],
      ['search', { pattern: 'a', glob: 'src/*.ts' }, /glob: matches file base names only/],
      ['search', { pattern: 'a', max_results: 5000 }, /max_results: must be at most 1000/],
      ['write_file', { path: 'a' }, /content: required/],
      ['write_file', { path: '../a', content: 'x' }, /path leaves the repository/],
      ['edit_file', { path: 'a', old_string: 'x' }, /new_string: required/],
      ['edit_file', { path: 'a', old_string: 'x', new_string: 'x' }, /the edit would change nothing/],
      ['edit_file', { path: 'a', old_string: 'x', new_string: 'y', replace_all: 'yes' }, /replace_all: must be true or false/],
      ['run', { command: '   ' }, /command: must not be blank/],
      ['run', { command: 'ls', timeout_seconds: 0 }, /timeout_seconds: must be at least 1/],
      ['git_diff', { path: 'a', extra: 1 }, /unknown field "extra"/],
      ['ask_human', {}, /question: required/],
      ['request_approval', { action: 'deploy' }, /reason: required/],
      ['finish', { summary: 'done', risks: 'none' }, /how_to_test: required/],
      ['finish', { summary: 1, risks: 'none', how_to_test: 'x' }, /summary: must be a string, got the integer 1/],
      ['rm_rf', {}, /unknown tool "rm_rf"/],
    ];
    for (const [name, args, pattern] of cases) {
      const res = validateToolArgs(name, args);
      assert.equal(res.ok, false, `${name} ${JSON.stringify(args)} was accepted`);
      assert.match(res.ok ? '' : res.error, pattern, `${name} ${JSON.stringify(args)}`);
    }
  });
});

describe('sandbox tools inside gVisor', () => {
  let driver: GvisorSandboxDriver;
  let handle: SandboxHandle | null = null;
  let dir: string;
  const tool = (name: string, args: unknown, opts?: Partial<SandboxToolOptions>) => tooling(driver, () => handle!)(name, args, opts);

  before(async () => {
    const runsc = await resolveRunsc();
    assert.ok(runsc, 'runsc is not installed: run `npm run setup`');
    dir = await workingCopy();
    driver = new GvisorSandboxDriver({ root: path.join(root, 'gvisor-sandboxes'), runsc, log: quiet, limits: { memoryMb: 512, processesPerCommand: 64, tmpMb: 64 } });
    handle = await driver.provision({ id: `llm-tools-gv-${process.pid}`, hostWorkdir: dir });
  });

  after(async () => {
    if (handle) await driver.teardown(handle);
    await driver.releaseHost();
  });

  it('reads, writes and edits files, runs commands as the sandbox user, searches and diffs', async () => {
    const wrote = await tool('write_file', { path: 'gv/hello.txt', content: 'hello from the host\n' });
    assert.deepEqual(wrote.wrote, ['gv/hello.txt']);
    const edited = await tool('edit_file', { path: 'src/util/math.ts', old_string: 'a + b', new_string: 'b + a' });
    assert.equal(edited.ok, true, edited.output);

    // The command sees the files the tools wrote, and runs inside gVisor as the unprivileged user.
    const run = await tool('run', { command: 'cat gv/hello.txt; id -u; pwd; echo "$GIT_DIR"' });
    assert.equal(run.ok, true, run.output);
    assert.equal(run.output, `hello from the host\n65534\n/workspace\n/workspace.git\n[exit code 0]`);
    const made = await tool('run', { command: 'printf "made inside\\n" > gv/inside.txt' });
    assert.equal(made.ok, true, made.output);
    const read = await tool('read_file', { path: 'gv/inside.txt' });
    assert.equal(read.output, '   1| made inside');

    const search = await tool('search', { pattern: 'b \\+ a|made', glob: '*.t*' });
    assert.deepEqual(search.output.trim().split('\n').sort(), ['gv/inside.txt:1:made inside', 'src/util/math.ts:2:  return b + a;']);

    const diff = await tool('git_diff', {});
    assert.equal(diff.ok, true, diff.output);
    assert.match(diff.output, /^ M src\/util\/math\.ts$/m);
    assert.match(diff.output, /^\+ {2}return b \+ a;$/m);
    assert.match(diff.output, /^\?\? gv\/hello\.txt$/m);
    assert.match(diff.output, /^\+made inside$/m);

    const slow = await tool('run', { command: 'sleep 30', timeout_seconds: 1 });
    assert.equal(slow.timed_out, true);
    assert.match(slow.output, /timed out after 1 s/);
  });
});

describe('fitContext', () => {
  it('elides older tool outputs, oldest first, and never drops a message', async () => {
    const { fitContext } = await import('../activities/llm/agent');
    const big = 'x'.repeat(1_000);
    const messages = [
      { role: 'user' as const, text: 'goal' },
      ...Array.from({ length: 20 }, (_, i) => [
        { role: 'assistant' as const, text: '', tool_calls: [{ id: `c${i}`, name: 'read_file', args: { path: `f${i}` } }] },
        { role: 'tool' as const, results: [{ id: `c${i}`, name: 'read_file', output: big }] },
      ]).flat(),
    ];
    const fitted = fitContext(messages, 15_000);
    assert.equal(fitted.length, messages.length, 'no message dropped');
    const outputs = fitted.filter((m) => m.role === 'tool').map((m) => (m as { results: { output: string }[] }).results[0]!.output);
    assert.match(outputs[0]!, /elided to fit the context/);
    assert.equal(outputs.at(-1), big, 'the newest outputs are whole');
    const total = fitted.reduce((n, m) => n + (m.role === 'tool' ? m.results[0]!.output.length : 0), 0);
    assert.ok(total <= 15_000, `within the budget: ${total}`);
    assert.deepEqual(fitContext(messages, 10_000_000), messages, 'untouched when it fits');
  });
});
