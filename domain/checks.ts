/**
 * Continuous integration on the agent's pull request: a failing check (GitHub's `check_run` or `check_suite`
 * completed with failure) sends the agent back for another round, up to a number of rounds in a row the operator
 * sets, then a human is asked. What checks print is text nobody vouches for (the repository's code, the model's
 * words, whatever the CI prints): it is read back bounded and handed on inert.
 *
 * Pure module: no I/O, so the workflow bundle may import it.
 */
import { codeBlock, inertMarkdown } from './markdown';
import { preview } from './rules';
import type { ForgeSender } from './forge';

/** The check run (or commit status context) a round's self-check is reported as: the task's own, never CI's. */
export const SELF_CHECK_NAME = 'agent self-check';
/** Who a round CI sent back is requested by, in the trace and the review item's resolution. */
export const CHECKS_ACTOR = 'github:checks';
/** Conclusions that send the agent back; the others (success, neutral, skipped, cancelled, stale, action_required) do not. */
export const FAILING_CONCLUSIONS: readonly string[] = ['failure', 'timed_out'];
/** CI rounds in a row a task takes when the operator sets none (GITHUB_MAX_CI_ROUNDS). */
export const DEFAULT_MAX_CI_ROUNDS = 3;
/** The most GITHUB_MAX_CI_ROUNDS may be: every round costs a planner run. */
export const MAX_CI_ROUNDS_LIMIT = 20;

/** Failing checks of one commit handed on; the rest are counted. */
export const MAX_FAILED_CHECKS = 10;
/** Longest check name, output title, output summary and output text kept of each failing check. */
export const MAX_CHECK_NAME_CHARS = 200;
export const MAX_CHECK_TITLE_CHARS = 300;
export const MAX_CHECK_SUMMARY_CHARS = 2_000;
export const MAX_CHECK_TEXT_CHARS = 4_000;
/** Annotations kept of each failing check (failures and warnings first), and the longest message of each. */
export const MAX_CHECK_ANNOTATIONS = 10;
export const MAX_ANNOTATION_CHARS = 500;
/** Longest request for changes the failing checks of one commit make (the review's own limit). */
export const MAX_CHECKS_REQUEST_CHARS = 20_000;
/** What the request keeps free for the counts at its end (checks left out, checks not finished). */
const COUNTS_ROOM_CHARS = 200;
/** What `preview` adds where it cuts (the count of characters elided). */
const PREVIEW_NOTE_CHARS = 40;

/** A check completed with a failing conclusion on some commit, as a delivery says (read back before anything acts on it). */
export interface ChecksFailed {
  kind: 'checks_failed';
  delivery_id: string;
  /** `owner/name` as the forge spells it. */
  repo: string;
  /** The commit the check ran on. */
  head_sha: string;
  /** The check run's name (a `check_run` event), or the app whose suite it was (a `check_suite` event). */
  check: string;
  /** The pull requests the delivery lists with their head branches (number null: a suite's head branch without one). */
  targets: { number: number | null; head: string }[];
  sender: ForgeSender;
}

/** The failing checks of a commit as the task takes them: its pull request and the commit (read back in the wait for review). */
export interface TaskChecksFailed {
  kind: 'checks_failed';
  delivery_id: string;
  repo: string;
  /** Null when the delivery named the task's branch but no pull request (a check suite). */
  number: number | null;
  head_sha: string;
  check: string;
}

/** One annotation of a failing check: where it points and what it says. */
export interface CheckAnnotation {
  path: string;
  line: number | null;
  level: string;
  message: string;
}

/** A failing check as read back from the forge, each text already cut to its bound. */
export interface FailedCheck {
  name: string;
  conclusion: string;
  /** The run's page on the forge (never the URL the app that made the run gives). */
  url: string | null;
  title: string;
  summary: string;
  text: string;
  annotations: CheckAnnotation[];
}

/** The checks of a commit as read back from the forge, the task's own self-check left out. */
export interface CommitChecks {
  head_sha: string;
  /** Failing checks, at most {@link MAX_FAILED_CHECKS}. */
  failed: FailedCheck[];
  /** Failing checks in all (more than `failed` holds when some were left out). */
  failed_count: number;
  /** Checks not completed yet. */
  pending: number;
  /** Check runs read (bounded: a commit with more is read in part). */
  read: number;
}

/** Whether a check's conclusion sends the agent back. */
export function isFailing(conclusion: string | null | undefined): boolean {
  return conclusion != null && FAILING_CONCLUSIONS.includes(conclusion.toLowerCase());
}

/**
 * The request for changes failing checks make: each check's name and conclusion, its output and annotations in
 * code blocks, all inert (no mention, no issue reference, no closing keyword, no fold), within
 * {@link MAX_CHECKS_REQUEST_CHARS}: a check too long for the room left keeps its output cut short and no
 * annotations, and one that does not fit even so is counted, never cut in half.
 */
export function checksRequest(checks: CommitChecks): string {
  const head = `CI checks failed on ${checks.head_sha.slice(0, 12)}: ${checks.failed.map((c) => inertMarkdown(oneLine(c.name))).join(', ')}`;
  const room = MAX_CHECKS_REQUEST_CHARS - COUNTS_ROOM_CHARS;
  let text = preview(head, room);
  let shown = 0;
  for (const c of checks.failed) {
    const left = room - text.length - 2;
    let section: string | null = checkSection(c);
    if (section.length > left) section = cutSection(c, left);
    if (section === null || section.length > left) break;
    text += `\n\n${section}`;
    shown += 1;
  }
  const notShown = checks.failed_count - shown;
  if (notShown > 0) text += `\n\n(${notShown} more failing check(s) not shown)`;
  if (checks.pending > 0) text += `\n\n(${checks.pending} check(s) had not finished)`;
  return text;
}

/**
 * Output kept of a check cut short, as a share of the room: made inert it grows by at most half, and a code
 * block's fences are at most as long as what they hold, plus one.
 */
const CUT_OUTPUT_SHARE = 1 / 5;

/** The least output worth showing of a check cut short; with less room the check is counted instead. */
const MIN_CUT_OUTPUT_CHARS = 200;

/** One failing check as Markdown: a heading, its output in a code block, each annotation with where it points. */
function checkSection(c: FailedCheck): string {
  const lines = [checkHeading(c)];
  const output = checkOutput(c);
  if (output !== '') lines.push(codeBlock(inertMarkdown(output)));
  for (const a of c.annotations) {
    lines.push(`- ${inertMarkdown(oneLine(a.path))}${a.line === null ? '' : `:${a.line}`} (${inertMarkdown(oneLine(a.level))}):`, codeBlock(inertMarkdown(a.message.trim())));
  }
  return lines.join('\n');
}

/** A failing check cut to `room`: its heading and its output cut short, annotations counted; null when too little output would be left. */
function cutSection(c: FailedCheck, room: number): string | null {
  const heading = checkHeading(c);
  const keep = Math.floor((room - heading.length) * CUT_OUTPUT_SHARE) - PREVIEW_NOTE_CHARS;
  if (keep < MIN_CUT_OUTPUT_CHARS) return null;
  const lines = [heading, codeBlock(inertMarkdown(preview(checkOutput(c), keep)))];
  if (c.annotations.length > 0) lines.push(`(${c.annotations.length} annotation(s) left out)`);
  return lines.join('\n');
}

/** A failing check's heading: its name, its conclusion, and its page on the forge. */
function checkHeading(c: FailedCheck): string {
  const page = c.url === null ? '' : ` ${inertMarkdown(oneLine(c.url))}`;
  return `### ${inertMarkdown(oneLine(c.name))} (${inertMarkdown(oneLine(c.conclusion))})${page}`;
}

/** A check's output title, summary and text, the empty ones left out. */
function checkOutput(c: FailedCheck): string {
  return [c.title, c.summary, c.text].map((s) => s.trim()).filter((s) => s !== '').join('\n\n');
}

/** `text` on one line (a name or a level cannot start a heading or a list of its own). */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}

/** One forge's checks side: what the worker reads there when a delivery says checks failed. */
export interface ForgeChecks {
  /** The latest check runs of `commit`, bounded, the task's own self-check left out: which failed, with their output. */
  commitChecks(input: { repo: string; commit: string }): Promise<CommitChecks>;
}
