/**
 * The diff reader of the review viewer: which lines and files are marked risky, and why, including
 * diffs written to slip past it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { annotateDiff, RISK, type AnnotatedDiff, type DiffFile } from '../domain/diff-risk';

/** A one-file `git diff` with one hunk made of `body` lines (each starting with ' ', '+' or '-'). */
function gitDiff(path: string, body: string[], header: string[] = []): string {
  const old = body.filter((l) => !l.startsWith('+')).length;
  const neu = body.filter((l) => !l.startsWith('-')).length;
  return [`diff --git a/${path} b/${path}`, ...header, `--- a/${path}`, `+++ b/${path}`, `@@ -1,${old} +1,${neu} @@`, ...body].join('\n') + '\n';
}

const annotate = (diff: string, protectedPaths: string[] = []): AnnotatedDiff => annotateDiff(diff, { protectedPaths });
const flagged = (f: DiffFile): [string, string[]][] => f.lines.filter((l) => l.risks).map((l) => [l.text, l.risks!]);

describe('diff risk rules', () => {
  it('marks a removed assertion and says so, and leaves plain code alone', () => {
    const d = annotate(gitDiff('src/sum.test.ts', [' it("adds", () => {', "-  expect(sum(1, 2)).toBe(3);", '+  sum(1, 2);', ' });']));
    assert.equal(d.files.length, 1);
    assert.deepEqual(flagged(d.files[0]!), [['  expect(sum(1, 2)).toBe(3);', [RISK.removedAssertion]]]);
    assert.equal(annotate(gitDiff('src/a.ts', ['-const a = 1;', '+const a = 2;'])).risky, 0);
  });

  it('catches assertions in other languages and an assertion commented out', () => {
    for (const line of ['    assert total == 3', '    assertEquals(3, total);', '  t.Fatalf("bad %d", n)', '    self.assertTrue(ok)', '  assert.equal(a, b);', '  result.should.equal(3);']) {
      const d = annotate(gitDiff('tests/test_x.py', [`-${line}`, `+# ${line.trim()}`]));
      assert.deepEqual(flagged(d.files[0]!).map(([, r]) => r), [[RISK.removedAssertion]], line);
    }
  });

  it('marks skipped, focused and disabled tests', () => {
    for (const line of ['it.skip("adds", () => {', 'xit("adds", () => {', 'describe.only("sum", () => {', '@pytest.mark.skip(reason="flaky")', '@Disabled', '    t.Skip("later")', '#[ignore]', "test('x', { skip: true }, () => {", 'fit("only this", () => {', '@unittest.skip("no")']) {
      const d = annotate(gitDiff('test/a.test.ts', [`+${line}`]));
      assert.deepEqual(flagged(d.files[0]!).map(([, r]) => r), [[RISK.skippedTest]], line);
    }
    assert.equal(annotate(gitDiff('src/split.ts', ['+const skipped = items.filter(isVisible);'])).risky, 0, 'a word containing skip is not a skip');
  });

  it('marks a deleted test file and deleted test cases', () => {
    const deleted = [
      'diff --git a/test/auth.test.ts b/test/auth.test.ts',
      'deleted file mode 100644',
      '--- a/test/auth.test.ts',
      '+++ /dev/null',
      '@@ -1,2 +0,0 @@',
      '-it("refuses a forged token", () => {',
      '-});',
    ].join('\n');
    const f = annotate(deleted).files[0]!;
    assert.equal(f.status, 'deleted');
    assert.equal(f.path, 'test/auth.test.ts');
    assert.ok(f.risks.includes(RISK.deletedTest));
    assert.deepEqual(flagged(f)[0]![1], [RISK.deletedTest]);
  });

  it('marks a test renamed out of the test tree (so the runner no longer finds it)', () => {
    const d = ['diff --git a/test/auth.test.ts b/docs/auth.txt', 'similarity index 100%', 'rename from test/auth.test.ts', 'rename to docs/auth.txt'].join('\n');
    const f = annotate(d).files[0]!;
    assert.equal(f.status, 'renamed');
    assert.equal(f.old_path, 'test/auth.test.ts');
    assert.ok(f.risks.includes(RISK.deletedTest));
  });

  it('marks protected paths with the policy globs, also when renamed away or written with ./', () => {
    assert.deepEqual(annotate(gitDiff('infra/prod/main.tf', ['+x = 1']), ['infra/']).files[0]!.risks, [RISK.protectedPath]);
    const moved = ['diff --git a/infra/main.tf b/tmp/main.tf', 'rename from infra/main.tf', 'rename to tmp/main.tf'].join('\n');
    assert.deepEqual(annotate(moved, ['infra/']).files[0]!.risks, [RISK.protectedPath]);
    const plain = ['--- ./secrets/key.pem', '+++ ./secrets/key.pem', '@@ -1 +1 @@', '-a', '+b'].join('\n');
    assert.deepEqual(annotate(plain, ['secrets/**']).files[0]!.risks, [RISK.protectedPath]);
    assert.equal(annotate(gitDiff('src/infra.ts', ['+x']), ['infra/']).risky, 0);
  });

  it('marks migrations, CI configuration and lockfiles', () => {
    assert.deepEqual(annotate(gitDiff('db/migrations/0042_drop_users.sql', ['+DROP TABLE users;'])).files[0]!.risks, [RISK.migration]);
    assert.deepEqual(annotate(gitDiff('.github/workflows/ci.yml', ['+    - run: echo'])).files[0]!.risks, [RISK.ci]);
    assert.deepEqual(annotate(gitDiff('.gitlab-ci.yml', ['+test: {}'])).files[0]!.risks, [RISK.ci]);
    assert.deepEqual(annotate(gitDiff('.GitHub/Workflows/ci.yml', ['+x'])).files[0]!.risks, [RISK.ci], 'case does not hide CI config');
    assert.deepEqual(annotate(gitDiff('web/package-lock.json', ['+  "x": 1'])).files[0]!.risks, [RISK.lockfile]);
    assert.deepEqual(annotate(gitDiff('go.sum', ['+x h1:abc'])).files[0]!.risks, [RISK.lockfile]);
  });

  it('marks widened permissions: chmod, 0777, workflow permissions, IAM wildcards, executables', () => {
    for (const line of ['chmod -R 777 /srv', 'os.chmod(path, 0o777)', 'fs.chmodSync(p, 0o777)', 'permissions:', '  contents: write', '"Action": "*",', '"Resource": ["*"]', 'privileged: true']) {
      const d = annotate(gitDiff('deploy/x.yml', [`+${line}`]));
      assert.ok(d.files[0]!.lines.some((l) => l.risks?.includes(RISK.permissions)), line);
    }
    const mode = ['diff --git a/run.sh b/run.sh', 'old mode 100644', 'new mode 100755'].join('\n');
    assert.deepEqual(annotate(mode).files[0]!.risks, [RISK.executable]);
  });

  it('does not let content that looks like a file header end a hunk (a fake header hiding a removed assertion)', () => {
    // The added line "++ b/README.md" is written "+++ b/README.md"; the hunk counts say it is content.
    const d = [
      'diff --git a/test/a.test.ts b/test/a.test.ts',
      '--- a/test/a.test.ts',
      '+++ b/test/a.test.ts',
      '@@ -1,2 +1,3 @@',
      '+-- a/README.md',
      '+++ b/README.md',
      '-  expect(ok).toBe(true);',
      ' done();',
    ].join('\n');
    const a = annotate(d);
    assert.equal(a.files.length, 1, 'still one file');
    assert.equal(a.files[0]!.path, 'test/a.test.ts');
    assert.ok(a.files[0]!.lines.some((l) => l.kind === 'del' && l.risks?.includes(RISK.removedAssertion)));
  });

  it('still reads changed lines a hunk header under-counts', () => {
    const d = ['diff --git a/t.test.js b/t.test.js', '--- a/t.test.js', '+++ b/t.test.js', '@@ -1,1 +1,1 @@', '-a', '+b', '-expect(x).toBe(1);', '+it.skip("x", () => {});'].join('\n');
    assert.deepEqual(flagged(annotate(d).files[0]!), [
      ['expect(x).toBe(1);', [RISK.removedAssertion]],
      ['it.skip("x", () => {});', [RISK.skippedTest]],
    ]);
  });

  it('reads C-quoted paths, so an odd file name cannot dodge a protected glob', () => {
    const d = ['diff --git "a/infra/caf\\303\\251.tf" "b/infra/caf\\303\\251.tf"', '--- "a/infra/caf\\303\\251.tf"', '+++ "b/infra/caf\\303\\251.tf"', '@@ -1 +1 @@', '-a', '+b'].join('\n');
    const f = annotate(d, ['infra/']).files[0]!;
    assert.equal(f.path, 'infra/café.tf');
    assert.deepEqual(f.risks, [RISK.protectedPath]);
  });

  it('splits several files, counts lines and collapses a big file', () => {
    const big = Array.from({ length: 500 }, (_, i) => `+line ${i}`);
    const d = annotate(gitDiff('a.txt', ['-x', '+y']) + gitDiff('big.txt', big));
    assert.deepEqual(d.files.map((f) => [f.path, f.additions, f.deletions, f.collapsed]), [['a.txt', 1, 1, false], ['big.txt', 500, 0, true]]);
    const capped = annotateDiff(gitDiff('big.txt', big), { protectedPaths: [], maxLines: 100 });
    assert.equal(capped.truncated, true);
    assert.equal(capped.files[0]!.lines.length, 100);
  });

  it('survives CRLF line ends and a missing newline marker', () => {
    const d = ['diff --git a/t.test.js b/t.test.js', '--- a/t.test.js', '+++ b/t.test.js', '@@ -1 +1 @@', '-assert.ok(x)', '\\ No newline at end of file', '+x'].join('\r\n');
    assert.deepEqual(flagged(annotate(d).files[0]!), [['assert.ok(x)', [RISK.removedAssertion]]]);
  });
});
