/**
 * Reading a unified diff for a reviewer: files and lines, with the lines and files that deserve a second
 * look marked and the reason named (protected paths, weakened tests, migrations, CI, lockfiles, permissions).
 *
 * Pure: no I/O and no Node built-ins. The diff is untrusted text from a sandbox: the parser follows hunk
 * counts, so content that looks like a file header inside a hunk stays content.
 */
import { globToRegExp } from './rules';

/** One line of a file's diff; `old`/`new` are line numbers in the old and new file. */
export interface DiffLine {
  kind: 'hunk' | 'add' | 'del' | 'ctx' | 'meta';
  text: string;
  old?: number;
  new?: number;
  /** Why a reviewer should look at this line; absent when nothing flagged it. */
  risks?: string[];
}

/** One file of the diff. */
export interface DiffFile {
  path: string;
  /** The path before a rename or deletion, when it differs from `path`. */
  old_path: string | null;
  status: 'added' | 'deleted' | 'modified' | 'renamed' | 'binary';
  additions: number;
  deletions: number;
  /** Reasons that concern the whole file (its path, its deletion, its mode). */
  risks: string[];
  /** True when the file is larger than the viewer shows by default. */
  collapsed: boolean;
  lines: DiffLine[];
}

/** A diff as the viewer shows it. */
export interface AnnotatedDiff {
  files: DiffFile[];
  /** Flagged lines plus flagged files: zero means nothing in this diff matched a rule. */
  risky: number;
  /** True when the diff had more lines than one answer holds. */
  truncated: boolean;
}

/** Options of {@link annotateDiff}. */
export interface AnnotateOptions {
  /** Protected globs of the task's policy. */
  protectedPaths: readonly string[];
  /** Files with more diff lines than this are `collapsed`. Default 400. */
  collapseLines?: number;
  /** Most lines kept over all files. Default 20,000. */
  maxLines?: number;
}

/** The reasons this module names, so the viewer and tests can refer to them. */
export const RISK = {
  protectedPath: 'protected path',
  skippedTest: 'test skipped or focused',
  deletedTest: 'test deleted',
  removedAssertion: 'assertion removed',
  migration: 'database migration',
  ci: 'CI configuration',
  lockfile: 'lockfile change',
  permissions: 'widened permissions',
  executable: 'file made executable',
} as const;

const TEST_PATH = /(^|\/)(tests?|__tests__|spec|specs)\/|[._-](test|spec)\.[A-Za-z0-9]+$|(^|\/)test_[^/]*\.py$|_test\.(go|py|rb|exs?)$|Tests?\.(java|kt|cs|scala)$/i;
const MIGRATION_PATH = /(^|\/)(migrations?|migrate|alembic|flyway|liquibase|db\/schema)(\/|$)|\.sql$|(^|\/)schema\.rb$/i;
const CI_PATH =
  /(^|\/)\.github\/(workflows|actions)\/|(^|\/)\.github\/dependabot\.ya?ml$|(^|\/)\.gitlab-ci\.ya?ml$|(^|\/)\.gitlab\/ci\/|(^|\/)\.circleci\/|(^|\/)Jenkinsfile[^/]*$|(^|\/)\.travis\.ya?ml$|(^|\/)azure-pipelines[^/]*\.ya?ml$|(^|\/)\.buildkite\/|(^|\/)bitbucket-pipelines\.ya?ml$|(^|\/)\.ci\/|(^|\/)\.drone\.ya?ml$|(^|\/)\.woodpecker(\.ya?ml|\/)|(^|\/)cloudbuild\.ya?ml$|(^|\/)\.pre-commit-config\.ya?ml$/i;
const LOCKFILE_PATH =
  /(^|\/)(package-lock\.json|npm-shrinkwrap\.json|yarn\.lock|pnpm-lock\.ya?ml|bun\.lockb?|Cargo\.lock|poetry\.lock|Pipfile\.lock|uv\.lock|pdm\.lock|Gemfile\.lock|go\.sum|composer\.lock|mix\.lock|pubspec\.lock|Podfile\.lock|packages\.lock\.json|gradle\.lockfile|flake\.lock|requirements[^/]*\.txt)$/i;

/** Added lines that skip, disable or focus tests (focusing one test silently skips the rest). */
const SKIP_LINE =
  /\b(x(it|describe|test|context|specify)|(it|test|describe|context|suite)\s*\.\s*(skip|only|todo|skipIf|runIf))\b|\bf(it|describe)\s*\(|@(Disabled|Ignore|Ignored|Skip)\b|\b(pytest\s*\.\s*mark\s*\.\s*(skip|skipif|xfail)|unittest\s*\.\s*(skip|skipIf|skipUnless|expectedFailure)|pytest\s*\.\s*skip)\b|\bt\s*\.\s*(Skip|SkipNow|Skipf)\s*\(|#\[\s*ignore\s*\]|\bskip\s*:\s*true\b|\{\s*skip\s*\}|\bpending\s*\(|\bmarkTestSkipped\b|\bassume(True|False|That)\s*\(/;
/** Removed lines that assert something. */
const ASSERT_LINE =
  /\b(assert\w*|expect|should|verify|require\s*\.\s*\w+|t\s*\.\s*(equal|ok|deepEqual|strictEqual|is|true|false|throws|match|notOk|Error|Errorf|Fatal|Fatalf|Fail))\b\s*[(.!\s]|\bassert\b|\.to(Be|Equal|Match|Throw|Have|Contain)\w*\s*\(|\.should\b|\bcheck\s*\(|\bt\s*\.\s*(Error|Fatal)/;
/** Removed lines that declare a test. */
const TEST_DECL_LINE = /\b(it|test|describe|specify|context)\s*\(|\bdef\s+test_?\w*|\bfunc\s+Test\w*\s*\(|@Test\b|#\[\s*test\s*\]|\bfn\s+test_\w*/;
/** Added lines that widen permissions: modes, chmod, CI token scopes, IAM wildcards, privileged containers. */
const PERMISSION_LINE =
  /chmod|\b(0o?)?[0-7]?777\b|\bo\+w\b|\ba\+w\b|^\s*permissions\s*:|\bwrite-all\b|:\s*write\b|"(Action|Resource|Principal|NotAction)"\s*:\s*(\[\s*)?"\*"|\b(Action|Resource|Principal)\s*:\s*(\[\s*)?['"]?\*['"]?|\bprivileged\s*:\s*true\b|\ballowPrivilegeEscalation\s*:\s*true\b|\bcap_add\b|\bsetuid\b|\bsudo\b|NOPASSWD|\bAdministratorAccess\b|\broles\/(owner|editor)\b|\bcluster-admin\b|\bumask\s+0{1,3}\b/i;

/** Annotate `diff` (unified, as `git diff` writes it) under the task's protected paths. */
export function annotateDiff(diff: string, opts: AnnotateOptions): AnnotatedDiff {
  const protectedRes = opts.protectedPaths.map(globToRegExp);
  const files = parseDiff(diff, opts.maxLines ?? 20_000);
  let risky = 0;
  for (const f of files.files) {
    f.risks = fileRisks(f, protectedRes);
    const inTest = TEST_PATH.test(f.path) || (f.old_path !== null && TEST_PATH.test(f.old_path));
    for (const l of f.lines) {
      const risks = lineRisks(l, inTest);
      if (risks.length > 0) {
        l.risks = risks;
        risky += 1;
      }
    }
    risky += f.risks.length > 0 ? 1 : 0;
    f.collapsed = f.lines.length > (opts.collapseLines ?? 400);
  }
  return { files: files.files, risky, truncated: files.truncated };
}

function fileRisks(f: DiffFile & { mode?: string }, protectedRes: RegExp[]): string[] {
  const out = new Set<string>();
  const paths = [f.path, ...(f.old_path !== null ? [f.old_path] : [])].map(normalise);
  // A rename out of (or into) a protected path touches the protected path.
  if (paths.some((p) => protectedRes.some((re) => re.test(p)))) out.add(RISK.protectedPath);
  if (paths.some((p) => MIGRATION_PATH.test(p))) out.add(RISK.migration);
  if (paths.some((p) => CI_PATH.test(p))) out.add(RISK.ci);
  if (paths.some((p) => LOCKFILE_PATH.test(p))) out.add(RISK.lockfile);
  if ((f.status === 'deleted' || f.status === 'renamed') && f.old_path !== null && TEST_PATH.test(f.old_path) && !TEST_PATH.test(f.path)) out.add(RISK.deletedTest);
  if (f.status === 'deleted' && TEST_PATH.test(f.path)) out.add(RISK.deletedTest);
  if (f.mode !== undefined && /^100755$/.test(f.mode)) out.add(RISK.executable);
  return [...out];
}

function lineRisks(l: DiffLine, inTest: boolean): string[] {
  const out: string[] = [];
  if (l.kind === 'add') {
    if (SKIP_LINE.test(l.text)) out.push(RISK.skippedTest);
    if (PERMISSION_LINE.test(l.text)) out.push(RISK.permissions);
  } else if (l.kind === 'del') {
    if (ASSERT_LINE.test(l.text)) out.push(RISK.removedAssertion);
    if (inTest && TEST_DECL_LINE.test(l.text)) out.push(RISK.deletedTest);
  }
  return out;
}

/** Paths compared without a leading `./` or `/`, and with backslashes read as separators. */
function normalise(p: string): string {
  return p.replace(/\\/g, '/').replace(/^(\.\/|\/)+/, '');
}

interface Parsed {
  files: (DiffFile & { mode?: string })[];
  truncated: boolean;
}

/** Split a unified diff into files and lines, following hunk counts. */
export function parseDiff(diff: string, maxLines = 20_000): Parsed {
  const files: (DiffFile & { mode?: string })[] = [];
  const lines = diff.split('\n');
  if (lines.at(-1) === '') lines.pop();
  let cur: (DiffFile & { mode?: string }) | null = null;
  let oldLeft = 0;
  let newLeft = 0;
  let oldNo = 0;
  let newNo = 0;
  let kept = 0;
  let truncated = false;
  const start = (path: string, oldPath: string | null): DiffFile & { mode?: string } => {
    const f: DiffFile & { mode?: string } = { path, old_path: oldPath, status: 'modified', additions: 0, deletions: 0, risks: [], collapsed: false, lines: [] };
    files.push(f);
    return f;
  };
  const push = (l: DiffLine): void => {
    if (!cur) cur = start('(unknown)', null);
    if (kept >= maxLines) {
      truncated = true;
      return;
    }
    kept += 1;
    cur.lines.push(l);
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (oldLeft > 0 || newLeft > 0) {
      const c = line[0];
      if (c === '+' && newLeft > 0) {
        push({ kind: 'add', text: line.slice(1), new: newNo++ });
        newLeft -= 1;
        if (cur) cur.additions += 1;
        continue;
      }
      if (c === '-' && oldLeft > 0) {
        push({ kind: 'del', text: line.slice(1), old: oldNo++ });
        oldLeft -= 1;
        if (cur) cur.deletions += 1;
        continue;
      }
      if ((c === ' ' || line === '') && oldLeft > 0 && newLeft > 0) {
        push({ kind: 'ctx', text: line.slice(1), old: oldNo++, new: newNo++ });
        oldLeft -= 1;
        newLeft -= 1;
        continue;
      }
      if (c === '\\') continue;
      // A hunk shorter than its header claims: fall through to header parsing.
      oldLeft = 0;
      newLeft = 0;
    }
    if (line.startsWith('\\')) continue;
    const git = /^diff --git (.+)$/.exec(line);
    if (git) {
      const [a, b] = gitHeaderPaths(git[1]!);
      cur = start(b ?? a ?? '(unknown)', a !== null && b !== null && a !== b ? a : null);
      continue;
    }
    const hunk = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$/.exec(line);
    if (hunk) {
      oldNo = Number(hunk[1]);
      newNo = Number(hunk[3]);
      oldLeft = hunk[2] === undefined ? 1 : Number(hunk[2]);
      newLeft = hunk[4] === undefined ? 1 : Number(hunk[4]);
      push({ kind: 'hunk', text: line });
      continue;
    }
    if (line.startsWith('--- ') && lines[i + 1]?.startsWith('+++ ')) {
      const from = headerPath(line.slice(4));
      const to = headerPath(lines[i + 1]!.slice(4));
      i += 1;
      // A plain unified diff (no `diff --git` line) starts its file here.
      if (!cur || cur.lines.length > 0) cur = start(to ?? from ?? '(unknown)', null);
      if (from === null) cur.status = 'added';
      if (to === null) cur.status = 'deleted';
      cur.path = to ?? from ?? cur.path;
      cur.old_path = from !== null && to !== null && from !== to ? from : cur.status === 'deleted' ? null : cur.old_path;
      continue;
    }
    if (!cur) continue;
    // A changed line outside any hunk (a header that under-counts): still shown, still read by the rules.
    if ((line[0] === '+' || line[0] === '-') && cur.lines.some((l) => l.kind === 'hunk')) {
      if (line[0] === '+') {
        push({ kind: 'add', text: line.slice(1) });
        cur.additions += 1;
      } else {
        push({ kind: 'del', text: line.slice(1) });
        cur.deletions += 1;
      }
      continue;
    }
    let m: RegExpExecArray | null;
    if ((m = /^new file mode (\d+)/.exec(line))) {
      cur.status = 'added';
      cur.mode = m[1];
    } else if (/^deleted file mode/.test(line)) {
      cur.status = 'deleted';
    } else if ((m = /^new mode (\d+)/.exec(line))) {
      cur.mode = m[1];
    } else if ((m = /^rename from (.+)$/.exec(line))) {
      cur.old_path = unquote(m[1]!);
      cur.status = 'renamed';
    } else if ((m = /^rename to (.+)$/.exec(line))) {
      cur.path = unquote(m[1]!);
      cur.status = 'renamed';
    } else if (/^Binary files .* differ$/.test(line) || line === 'GIT binary patch') {
      cur.status = 'binary';
    }
    if (cur.lines.length < 50 && /^(old mode|new mode|similarity index|rename |copy |Binary files)/.test(line)) push({ kind: 'meta', text: line });
  }
  return { files, truncated };
}

/** The `a/` and `b/` paths of a `diff --git` line (either may be C-quoted). */
function gitHeaderPaths(rest: string): [string | null, string | null] {
  const tokens: string[] = [];
  let s = rest;
  while (s.length > 0 && tokens.length < 2) {
    if (s.startsWith('"')) {
      const end = closingQuote(s);
      tokens.push(unquote(s.slice(0, end + 1)));
      s = s.slice(end + 1).trimStart();
    } else if (tokens.length === 0) {
      // Unquoted: split at the " b/" that begins the second path.
      const at = s.indexOf(' b/');
      if (at < 0) return [strip(s), null];
      tokens.push(s.slice(0, at));
      s = s.slice(at + 1);
    } else {
      tokens.push(s);
      s = '';
    }
  }
  return [tokens[0] ? strip(tokens[0]) : null, tokens[1] ? strip(tokens[1]) : null];
}

function closingQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === '\\') i += 1;
    else if (s[i] === '"') return i;
  }
  return s.length - 1;
}

/** The path of a `---`/`+++` line, or null for /dev/null. */
function headerPath(raw: string): string | null {
  const p = unquote(raw.replace(/\t.*$/, '').trim());
  if (p === '/dev/null') return null;
  return strip(p);
}

function strip(p: string): string {
  return p.replace(/^[ab]\//, '');
}

/** Undo git's C-style quoting of a path (`"a/t\303\251st"`). */
function unquote(p: string): string {
  if (!(p.startsWith('"') && p.endsWith('"') && p.length >= 2)) return p;
  const body = p.slice(1, -1);
  const bytes: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      for (const b of new TextEncoder().encode(c)) bytes.push(b);
      continue;
    }
    const n = body[++i] ?? '';
    if (/[0-7]/.test(n)) {
      const oct = body.slice(i, i + 3);
      bytes.push(parseInt(oct, 8));
      i += 2;
    } else {
      const map: Record<string, number> = { n: 10, t: 9, r: 13, '"': 34, '\\': 92, a: 7, b: 8, f: 12, v: 11 };
      bytes.push(map[n] ?? n.charCodeAt(0));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
