/**
 * The coding agent's sandbox tools, executed through the `SandboxDriver`, so they behave the same
 * under the process, gVisor and Kubernetes drivers.
 *
 * File tools (`read_file`, `write_file`, `edit_file`) use the driver's `readFile`/`writeFile`,
 * which keep every access inside the working copy. The others are shell commands run with
 * `driver.exec`, every argument quoted. A model's mistake (a bad path, a missing file, an edit
 * that does not match) comes back as `ok: false` with a message telling it what to do instead;
 * only infrastructure failures and cancellation throw.
 */
import type { EgressGrant, EgressReport } from '../egress/types';
import { createHash } from 'node:crypto';
import { SandboxAbortedError, SandboxPathError } from '../sandbox/common';
import { UnsafeFileError, resolvedInside } from '../sandbox/safe-fs';
import type { ExecResult, SandboxDriver, SandboxHandle } from '../sandbox/driver';
import { SEARCH_MAX_RESULTS, isControlTool, isSandboxTool, validateToolArgs, type SandboxToolName, type ToolArgs } from '../../domain/tool-specs';

export {
  CONTROL_TOOLS,
  SANDBOX_TOOLS,
  TOOL_DECLARATIONS,
  isControlTool,
  isSandboxTool,
  normalizeToolPath,
  validateToolArgs,
  type ControlToolName,
  type SandboxToolName,
  type ToolArgs,
  type ToolArgsValidation,
  type ToolName,
  type ValidToolCall,
} from '../../domain/tool-specs';

/** Limits and hooks of one tool execution, set by the task rather than the model. */
export interface SandboxToolOptions {
  /** Characters of output the model gets at most; longer output keeps its head and tail. */
  maxOutputChars: number;
  /** Timeout of `run` when the model names none, and of the commands behind `list_dir`, `search` and `git_diff`. */
  defaultTimeoutSeconds: number;
  /** Upper limit of `run`'s `timeout_seconds`. */
  maxTimeoutSeconds: number;
  /** Cancels the tool; a running command is killed and the call rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** Called about once a second while a command runs (activities heartbeat here). */
  onTick?: () => void;
  /** What the model's `run` commands may reach through the egress proxy; the tools' own commands reach nothing. */
  egress?: EgressGrant;
}

/** What a sandbox tool did, as the model is shown it. */
export interface SandboxToolResult {
  /** False when the tool failed or refused (the output says why), or the command exited non-zero. */
  ok: boolean;
  output: string;
  /** Whether the output was cut to `maxOutputChars`. */
  truncated: boolean;
  /** `run` only: the command's exit code (124 after a timeout). */
  exit_code?: number;
  /** `run` only: whether the command was killed at its timeout. */
  timed_out?: boolean;
  /** `write_file`/`edit_file`: repository-relative paths of the files changed, symbolic links resolved. */
  wrote?: string[];
  /** `run` only: what the egress proxy saw of the command's traffic, where the sandbox routes egress. */
  egress?: EgressReport;
  /** `write_file`/`edit_file`: the git blob id of what was written to `wrote[0]`. */
  wrote_blob?: string;
}

/** Thrown when a control tool (`ask_human`, `request_approval`, `finish`) reaches the sandbox: the workflow must handle those. */
export class NotASandboxToolError extends Error {
  override readonly name = 'NotASandboxToolError';
  constructor(readonly tool: string) {
    super(`${tool} is a control tool: the workflow handles it, not the sandbox`);
  }
}

/** Longest line `search` shows; longer ones (minified code) are cut. */
const SEARCH_LINE_CHARS = 300;
/** Most entries `list_dir` shows. */
const LIST_DIR_MAX_ENTRIES = 1_000;
/** Lines shown around an edit so the model sees its result in place. */
const EDIT_CONTEXT_LINES = 3;
/** Directories never descended into by `list_dir` and `search`. */
const SKIPPED_DIRS = ['.git', 'node_modules'];
/** Marks the exit status a pipeline's first command passes to its last (never the start of a `./path` line). */
const STATUS_MARK = '__tool_exit_status=';

/** How each tool tells the model to see what was cut. */
const MORE_HINTS: Record<SandboxToolName, string> = {
  list_dir: 'list a subdirectory, or use a smaller depth, to see a part',
  read_file: 'use read_file with start_line/end_line, or search, to see a part',
  search: 'narrow the pattern, path or glob, or lower max_results, to see a part',
  write_file: 'use read_file with start_line/end_line to see a part',
  edit_file: 'use read_file with start_line/end_line to see a part',
  run: 'rerun the command with its output filtered (e.g. `| tail -n 50`, `| grep -n error`) or redirected to a file you then search or read with read_file, to see a part',
  git_diff: 'use git_diff with path set to one file or directory, to see a part',
};

/**
 * Run sandbox tool `name` with the model's `args` in the sandbox `handle`. Arguments are validated
 * first; model mistakes come back as `ok: false`. Rejects with an `AbortError` when `opts.signal`
 * fires, with {@link NotASandboxToolError} for a control tool, and with the driver's error when the
 * sandbox itself fails.
 */
export async function executeSandboxTool(
  driver: SandboxDriver,
  handle: SandboxHandle,
  name: string,
  args: unknown,
  opts: SandboxToolOptions,
): Promise<SandboxToolResult> {
  if (isControlTool(name)) throw new NotASandboxToolError(name);
  if (!isSandboxTool(name)) {
    // An unknown name is the model's mistake: validation words the answer (it lists the tools).
    const unknown = validateToolArgs(name, args);
    return { ok: false, output: unknown.ok ? `unknown tool ${name}` : unknown.error, truncated: false };
  }
  const checked = validateToolArgs(name, args);
  if (!checked.ok) return { ok: false, output: checked.error, truncated: false };
  throwIfAborted(opts.signal, name);
  const ctx: ToolContext = { driver, handle, opts };
  switch (checked.name) {
    case 'list_dir':
      return listDir(ctx, checked.args);
    case 'read_file':
      return readFile(ctx, checked.args);
    case 'search':
      return search(ctx, checked.args);
    case 'write_file':
      return writeFile(ctx, checked.args);
    case 'edit_file':
      return editFile(ctx, checked.args);
    case 'run':
      return run(ctx, checked.args);
    case 'git_diff':
      return gitDiff(ctx, checked.args);
  }
}

interface ToolContext {
  driver: SandboxDriver;
  handle: SandboxHandle;
  opts: SandboxToolOptions;
}

async function listDir(ctx: ToolContext, args: ToolArgs['list_dir']): Promise<SandboxToolResult> {
  const refused = await refuseEscape(ctx, args.path);
  if (refused) return refused;
  const target = shellPath(args.path);
  const skipped = SKIPPED_DIRS.map((d) => `-name ${quote(d)}`).join(' -o ');
  const script = [
    `p=${quote(target)}`,
    `if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo ${quote(`no such directory: ${args.path} (list "." to see what exists)`)}; exit 3; fi`,
    `if [ ! -d "$p" ]; then echo ${quote(`${args.path} is a file, not a directory: read it with read_file`)}; exit 3; fi`,
    // Portable find (no -printf): each kind of entry gets its own suffix from printf.
    `find "$p" -mindepth 1 -maxdepth ${args.depth} \\( \\( ${skipped} \\) -type d -prune -exec printf '%s/ (not expanded)\\n' {} + \\)` +
      ` -o \\( -type d -exec printf '%s/\\n' {} + \\) -o \\( -type l -exec printf '%s@\\n' {} + \\) -o -print 2>&1 |` +
      ` LC_ALL=C sort | awk -v max=${LIST_DIR_MAX_ENTRIES} '{ sub(/^\\.\\//, ""); n++; if (n <= max) print }` +
      ` END { if (n == 0) print "(empty directory)"; else if (n > max) printf "[%d more entries not shown; list a subdirectory or use a smaller depth]\\n", n - max }'`,
  ].join('\n');
  const res = await exec(ctx, script, internalTimeout(ctx));
  if (res.timedOut) return failed(ctx, 'list_dir', res, `list_dir timed out after ${internalTimeout(ctx)} s; list a subdirectory or use a smaller depth`);
  return shaped(ctx, 'list_dir', res, res.exitCode === 0);
}

async function readFile(ctx: ToolContext, args: ToolArgs['read_file']): Promise<SandboxToolResult> {
  let text: string;
  try {
    text = await ctx.driver.readFile(ctx.handle, args.path);
  } catch (err) {
    return modelMistake(err, args.path, 'read') ?? rethrow(err);
  }
  throwIfAborted(ctx.opts.signal, 'read_file');
  if (text.includes('\0')) return refusal(`${args.path} is a binary file; read_file shows text files only (use run with a tool such as \`xxd | head\` to inspect it)`);
  const lines = splitLines(text);
  if (lines.length === 0) return refusal(`(${args.path} is empty)`, true);
  const start = args.start_line ?? 1;
  if (start > lines.length) return refusal(`${args.path} has ${lines.length} line${lines.length === 1 ? '' : 's'}; start_line ${start} is past its end`);
  const end = Math.min(args.end_line ?? lines.length, lines.length);
  const whole = start === 1 && end === lines.length;
  const trailer = whole ? '' : `\n\n[lines ${start}-${end} of ${lines.length}]`;
  const body = numbered(lines, start, end);
  const cut = truncate(body, ctx.opts.maxOutputChars - trailer.length, MORE_HINTS.read_file);
  return { ok: true, output: cut.text + trailer, truncated: cut.truncated };
}

async function search(ctx: ToolContext, args: ToolArgs['search']): Promise<SandboxToolResult> {
  const refused = await refuseEscape(ctx, args.path);
  if (refused) return refused;
  const target = quote(shellPath(args.path));
  const pattern = quote(args.pattern);
  const rgGlobs = [...SKIPPED_DIRS.map((d) => `--glob ${quote(`!${d}`)}`), ...(args.glob ? [`--glob ${quote(args.glob)}`] : [])].join(' ');
  const grepFilters = [...SKIPPED_DIRS.map((d) => `--exclude-dir=${quote(d)}`), ...(args.glob ? [`--include=${quote(args.glob)}`] : [])].join(' ');
  // Both search hidden and ignored files alike, skipping only .git and node_modules, so results do not depend on which is installed.
  const script = [
    `{ if command -v rg >/dev/null 2>&1; then`,
    `  rg --line-number --with-filename --no-heading --color never --hidden --no-ignore ${rgGlobs} -e ${pattern} -- ${target} 2>&1`,
    `else`,
    `  grep -rnHIE ${grepFilters} -e ${pattern} -- ${target} 2>&1`,
    // Sorted by file, then line number, so the same search always lists the same first results.
    `fi; echo "${STATUS_MARK}$?"; } | LC_ALL=C sort -s -t: -k1,1 -k2,2n | awk -v max=${args.max_results} -v width=${SEARCH_LINE_CHARS} '`,
    `  index($0, "${STATUS_MARK}") == 1 { rc = substr($0, ${STATUS_MARK.length + 1}) + 0; next }`,
    `  { n++; if (n > max) next; sub(/^\\.\\//, ""); if (length($0) > width) $0 = substr($0, 1, width) " [… line cut]"; print }`,
    `  END { if (n > max) printf "[%d more matching lines not shown; narrow the pattern, path or glob, or raise max_results (at most ${SEARCH_MAX_RESULTS})]\\n", n - max; exit rc }'`,
  ].join('\n');
  const res = await exec(ctx, script, internalTimeout(ctx));
  if (res.timedOut) return failed(ctx, 'search', res, `search timed out after ${internalTimeout(ctx)} s; narrow the path or glob`);
  if (res.exitCode === 1) {
    const where = args.path === '.' ? 'the repository' : args.path;
    return { ok: true, output: `no matches for ${JSON.stringify(args.pattern)} in ${where}${args.glob ? ` (files matching ${args.glob})` : ''}`, truncated: false };
  }
  // 2 and up: a bad pattern or an unreadable path; the output carries the message.
  return shaped(ctx, 'search', res, res.exitCode === 0);
}

async function writeFile(ctx: ToolContext, args: ToolArgs['write_file']): Promise<SandboxToolResult> {
  let wrote: string;
  try {
    wrote = await ctx.driver.writeFile(ctx.handle, args.path, args.content);
  } catch (err) {
    return modelMistake(err, args.path, 'write') ?? rethrow(err);
  }
  const lines = splitLines(args.content).length;
  const bytes = Buffer.byteLength(args.content, 'utf8');
  const via = wrote === args.path ? '' : ` (through a symbolic link: the file written is ${wrote})`;
  return { ok: true, output: `wrote ${args.path}: ${lines} line${lines === 1 ? '' : 's'}, ${bytes} bytes${via}`, truncated: false, wrote: [wrote], wrote_blob: blobId(args.content) };
}

async function editFile(ctx: ToolContext, args: ToolArgs['edit_file']): Promise<SandboxToolResult> {
  let text: string;
  try {
    text = await ctx.driver.readFile(ctx.handle, args.path);
  } catch (err) {
    return modelMistake(err, args.path, 'edit') ?? rethrow(err);
  }
  throwIfAborted(ctx.opts.signal, 'edit_file');
  if (text.includes('\0')) return refusal(`${args.path} is a binary file; edit_file changes text files only`);
  const found = occurrences(text, args.old_string);
  if (found.length === 0) return refusal(notFoundMessage(text, args.path, args.old_string));
  if (found.length > 1 && !args.replace_all) {
    const shown = found.slice(0, 10).map((at) => lineOf(text, at));
    const more = found.length > shown.length ? ` and ${found.length - shown.length} more` : '';
    return refusal(
      `old_string occurs ${found.length} times in ${args.path} (at lines ${shown.join(', ')}${more}); nothing was changed. ` +
        'Add surrounding lines to old_string so it matches exactly one place, or set replace_all to true to change every occurrence.',
    );
  }
  let edited = '';
  let from = 0;
  for (const at of found) {
    // Slices, not String.replace: `$&` and friends in new_string must stay literal.
    edited += text.slice(from, at) + args.new_string;
    from = at + args.old_string.length;
  }
  edited += text.slice(from);
  let wrote: string;
  try {
    wrote = await ctx.driver.writeFile(ctx.handle, args.path, edited);
  } catch (err) {
    return modelMistake(err, args.path, 'write') ?? rethrow(err);
  }
  const header = `replaced ${found.length} occurrence${found.length === 1 ? '' : 's'} in ${args.path}${wrote === args.path ? '' : ` (through a symbolic link: the file written is ${wrote})`}`;
  // Show the first edited place as it is now, so the model can check indentation and context.
  const editedLines = splitLines(edited);
  const firstLine = lineOf(edited, found[0]!);
  const lastLine = firstLine + splitLines(args.new_string).length - 1;
  const start = Math.max(1, firstLine - EDIT_CONTEXT_LINES);
  const end = Math.min(editedLines.length, Math.max(firstLine, lastLine) + EDIT_CONTEXT_LINES);
  const snippet = editedLines.length === 0 ? '(the file is now empty)' : numbered(editedLines, start, Math.max(start, end));
  const label = found.length > 1 ? `first edited place, lines ${start}-${end}` : `lines ${start}-${end} now`;
  const cut = truncate(`${header}\n[${label}:]\n${snippet}`, ctx.opts.maxOutputChars, MORE_HINTS.edit_file);
  return { ok: true, output: cut.text, truncated: cut.truncated, wrote: [wrote], wrote_blob: blobId(edited) };
}

async function run(ctx: ToolContext, args: ToolArgs['run']): Promise<SandboxToolResult> {
  const timeout = Math.max(1, Math.min(args.timeout_seconds ?? ctx.opts.defaultTimeoutSeconds, ctx.opts.maxTimeoutSeconds));
  const res = await exec(ctx, args.command, timeout, ctx.opts.egress);
  const status = res.timedOut ? `[exit code ${res.exitCode} (timed out after ${timeout} s)]` : `[exit code ${res.exitCode}]`;
  const body = withDroppedNote(res) || '(no output)';
  const cut = truncate(body, ctx.opts.maxOutputChars - status.length - 1, MORE_HINTS.run);
  return {
    ok: res.exitCode === 0 && !res.timedOut,
    output: `${cut.text}${cut.text.endsWith('\n') ? '' : '\n'}${status}`,
    truncated: cut.truncated || res.outputTruncatedBytes > 0,
    exit_code: res.exitCode,
    timed_out: res.timedOut,
    ...(res.egress ? { egress: res.egress } : {}),
  };
}

async function gitDiff(ctx: ToolContext, args: ToolArgs['git_diff']): Promise<SandboxToolResult> {
  const refused = await refuseEscape(ctx, args.path);
  if (refused) return refused;
  const target = quote(shellPath(args.path));
  const flags = '--no-ext-diff --no-textconv --no-color';
  // --no-optional-locks: git must not try to refresh the index, which some sandboxes mount read-only.
  const script = [
    `s=$(git --no-optional-locks status --porcelain=v1 --untracked-files=all -- ${target} 2>&1) || { printf '%s\\n' "$s"; exit 2; }`,
    `if [ -z "$s" ]; then echo ${quote(`no changes${args.path === '.' ? '' : ` under ${args.path}`}: the working copy matches the last commit`)}; exit 0; fi`,
    `printf '%s\\n\\n' "$s"`,
    `git --no-optional-locks diff ${flags} HEAD -- ${target} 2>&1 || exit 2`,
    // Untracked files, shown as new-file diffs; `git diff --no-index` exits 1 when the files differ.
    `git --no-optional-locks ls-files -z --others --exclude-standard -- ${target} |` +
      ` xargs -0 -r -n 1 sh -c 'git diff --no-index ${flags} -- /dev/null "$1" 2>&1; [ $? -le 1 ]' sh || exit 2`,
  ].join('\n');
  const res = await exec(ctx, script, internalTimeout(ctx));
  if (res.timedOut) return failed(ctx, 'git_diff', res, `git_diff timed out after ${internalTimeout(ctx)} s; pass path to diff one file or directory`);
  if (res.exitCode !== 0 && /not a git repository/i.test(res.output)) {
    return refusal(`git cannot see the repository from this sandbox, so git_diff is not available here; read the files you changed with read_file instead.\n${res.output.trim()}`);
  }
  return shaped(ctx, 'git_diff', res, res.exitCode === 0);
}

/** Run a command of ours or the model's with the task's output limit and the call's signal and tick. */
function exec(ctx: ToolContext, command: string, timeoutSeconds: number, egress?: EgressGrant): Promise<ExecResult> {
  return ctx.driver.exec(ctx.handle, command, {
    ...(egress ? { egress } : {}),
    timeoutMs: timeoutSeconds * 1_000,
    // Generous, so the model's view keeps a real head as well as the tail (the driver keeps only the tail).
    maxOutputBytes: Math.max(1 << 20, ctx.opts.maxOutputChars * 8),
    signal: ctx.opts.signal,
    onTick: ctx.opts.onTick,
  });
}

function internalTimeout(ctx: ToolContext): number {
  return Math.max(1, Math.min(ctx.opts.defaultTimeoutSeconds, ctx.opts.maxTimeoutSeconds));
}

/** The result of one of our own commands, its output cut with the tool's hint. */
function shaped(ctx: ToolContext, tool: SandboxToolName, res: ExecResult, ok: boolean): SandboxToolResult {
  const cut = truncate(withDroppedNote(res).replace(/\n+$/, ''), ctx.opts.maxOutputChars, MORE_HINTS[tool]);
  return { ok, output: cut.text, truncated: cut.truncated || res.outputTruncatedBytes > 0 };
}

/** A failed command of ours: the explanation first, then what it printed. */
function failed(ctx: ToolContext, tool: SandboxToolName, res: ExecResult, why: string): SandboxToolResult {
  const cut = truncate(withDroppedNote(res).replace(/\n+$/, ''), ctx.opts.maxOutputChars - why.length - 1, MORE_HINTS[tool]);
  return { ok: false, output: cut.text ? `${why}\n${cut.text}` : why, truncated: cut.truncated || res.outputTruncatedBytes > 0 };
}

function refusal(message: string, ok = false): SandboxToolResult {
  return { ok, output: message, truncated: false };
}

/** The command's output, preceded by a note when the driver could not keep its beginning. */
function withDroppedNote(res: ExecResult): string {
  if (res.outputTruncatedBytes === 0) return res.output;
  return `[… the first ${res.outputTruncatedBytes} bytes of output were not kept …]\n${res.output}`;
}

/**
 * `text` cut to about `budget` characters keeping its head and tail, with a note in the middle
 * saying how much was cut and how to see it. Cuts prefer line boundaries.
 */
export function truncate(text: string, budget: number, hint: string): { text: string; truncated: boolean } {
  if (text.length <= budget) return { text, truncated: false };
  const note = (cut: number): string => `[… ${cut} characters cut; ${hint} …]`;
  // Two newlines around the note, and room for the count to grow by a digit or two.
  const keep = Math.max(0, budget - note(text.length).length - 2);
  let headEnd = Math.ceil(keep / 2);
  let tailStart = text.length - (keep - headEnd);
  const nl = text.lastIndexOf('\n', headEnd - 1);
  if (nl >= 0 && nl >= headEnd * 0.75) headEnd = nl + 1;
  const nl2 = text.indexOf('\n', tailStart);
  if (nl2 >= 0 && nl2 + 1 - tailStart <= (text.length - tailStart) * 0.25) tailStart = nl2 + 1;
  // Never split a UTF-16 surrogate pair.
  if (headEnd > 0 && isHighSurrogate(text.charCodeAt(headEnd - 1))) headEnd--;
  if (tailStart < text.length && isLowSurrogate(text.charCodeAt(tailStart))) tailStart++;
  const head = text.slice(0, headEnd);
  const tail = text.slice(tailStart);
  const middle = note(tailStart - headEnd);
  return { text: `${head}${head === '' || head.endsWith('\n') ? '' : '\n'}${middle}${tail === '' ? '' : '\n'}${tail}`, truncated: true };
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** Lines of a text; a final newline ends the last line rather than starting an empty one. */
function splitLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Lines `start`..`end` (1-based, inclusive) prefixed with their numbers, as `  12| text`. */
function numbered(lines: string[], start: number, end: number): string {
  const width = Math.max(4, String(end).length);
  const out: string[] = [];
  for (let n = start; n <= end; n++) out.push(`${String(n).padStart(width)}| ${lines[n - 1]!.replace(/\r$/, '')}`);
  return out.join('\n');
}

/** Start offsets of the non-overlapping occurrences of `needle` in `text`. */
function occurrences(text: string, needle: string): number[] {
  const found: number[] = [];
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) found.push(at);
  return found;
}

/** 1-based line number of offset `at`. */
function lineOf(text: string, at: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < at; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** Why `old_string` was not found, with a hint at the usual causes. */
function notFoundMessage(text: string, file: string, oldString: string): string {
  let hint = 'Read the file with read_file and copy the text exactly (whitespace and indentation included, without the line-number prefixes).';
  if (text.includes('\r\n') && oldString.includes('\n') && !oldString.includes('\r\n')) {
    hint = `${file} has Windows line endings (\\r\\n): old_string must contain them too, or match within a single line.`;
  } else {
    const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();
    if (squash(oldString) !== '' && squash(text).includes(squash(oldString))) {
      hint = 'The text is there with different whitespace or indentation: read the lines with read_file and copy them exactly.';
    }
  }
  return `old_string was not found in ${file}; nothing was changed. ${hint}`;
}

/** A readable answer for an error the model caused, or null when the error is the sandbox's. */
function modelMistake(err: unknown, file: string, verb: 'read' | 'write' | 'edit'): SandboxToolResult | null {
  if (err instanceof UnsafeFileError) return refusal(`cannot ${verb} ${file}: it ${err.detail}`);
  if (err instanceof SandboxPathError) {
    return refusal(`cannot ${verb} ${file}: it is outside the working copy (a symbolic link leading out of the repository, or an absolute path). Only files inside the repository can be used.`);
  }
  switch ((err as NodeJS.ErrnoException | null)?.code) {
    case 'ENOENT':
      return refusal(verb === 'write' ? `cannot write ${file}: a directory on its path does not exist` : `no such file: ${file}${verb === 'edit' ? ' (create it with write_file)' : ''}; use list_dir or search to find the right path`);
    case 'EISDIR':
      return refusal(`${file} is a directory, not a file${verb === 'read' ? ': list it with list_dir' : ''}`);
    case 'ENOTDIR':
      return refusal(`cannot ${verb} ${file}: a part of its path is a file, not a directory`);
    case 'ELOOP':
      return refusal(`cannot ${verb} ${file}: its symbolic links form a loop`);
    case 'ENAMETOOLONG':
      return refusal(`cannot ${verb} ${file}: the name is too long`);
    default:
      return null;
  }
}

function rethrow(err: unknown): never {
  throw err;
}

/**
 * For tools that pass a path to a command: refuse it when it leads out of the working copy through
 * a symbolic link, as `readFile` does. Checked on the host copy, which every driver keeps current.
 */
async function refuseEscape(ctx: ToolContext, file: string): Promise<SandboxToolResult | null> {
  try {
    await resolvedInside(ctx.handle.hostWorkdir, file);
    return null;
  } catch (err) {
    if (err instanceof SandboxPathError) return refusal(`${file} is outside the working copy (a symbolic link leading out of the repository); only paths inside it can be used`);
    // A missing path or a file in the middle of it: the command itself says so.
    if (['ENOTDIR', 'ENOENT'].includes((err as NodeJS.ErrnoException).code ?? '')) return null;
    throw err;
  }
}

/** The id git gives a blob of `content`: what a checkpoint holds for a file written with it. */
function blobId(content: string): string {
  const data = Buffer.from(content, 'utf8');
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

/** `./path` for a command line, so a name starting with `-` is never an option. */
function shellPath(file: string): string {
  return file === '.' ? '.' : `./${file}`;
}

/** Single-quote `text` for /bin/sh. */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function throwIfAborted(signal: AbortSignal | undefined, tool: string): void {
  if (signal?.aborted) throw new SandboxAbortedError(tool, { cause: signal.reason });
}
