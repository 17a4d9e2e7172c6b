/**
 * Comments that speak to the agent: on an issue they ask for a task, on the agent's own pull request they
 * steer the task that opened it. A comment speaks to the agent when a line starts with the `/agent` command,
 * or when it mentions the login the operator named (GITHUB_MENTION).
 *
 * Pure module: no I/O.
 */
import { MAX_ISSUE_GOAL_CHARS, type ForgeSender } from './forge';

/** A comment someone wrote on an issue or a pull request (GitHub's `issue_comment` created). */
export interface IssueCommented {
  kind: 'issue_commented';
  delivery_id: string;
  repo: string;
  default_branch: string;
  /** The issue's (or pull request's) number. */
  number: number;
  /** Whether the comment is on a pull request (GitHub keeps pull request conversations as issues). */
  on_pull_request: boolean;
  title: string;
  body: string;
  labels: string[];
  /** The comment's id: the same comment re-sent under another delivery id names the same task. */
  comment_id: number;
  /** What the comment asks of the agent (the command's text or the whole comment), never empty. */
  request: string;
  sender: ForgeSender;
}

/** The command a comment line starts with to speak to the agent. */
export const AGENT_COMMAND = '/agent';
/** Longest request a comment hands on (the task schema's message limit). */
export const MAX_COMMENT_REQUEST_CHARS = 20_000;
/** Base permissions that may steer the agent: write access or more (`maintain` counts as write, `triage` as read). */
export const STEERING_PERMISSIONS: ReadonlySet<string> = new Set(['admin', 'maintain', 'write']);

const COMMAND_LINE = /^[ \t]*\/agent(?:[ \t]+(.*))?$/im;

/**
 * What `comment` asks of the agent, or null when it does not speak to it: the text after `/agent` (with the
 * lines below it), or, when it mentions `@mention`, the whole comment. Quoted lines (`> …`) and fenced code do not
 * count, so quoting someone's command does not repeat it.
 */
export function agentRequest(comment: string, mention: string | null): string | null {
  const own = ownLines(comment);
  const m = COMMAND_LINE.exec(own);
  let request: string | null = null;
  if (m !== null) {
    const rest = own.slice(m.index + m[0].length).trim();
    request = [m[1]?.trim() ?? '', rest].filter((p) => p !== '').join('\n');
    if (request === '') request = 'Please work on this.';
  } else if (mention !== null && mentions(own, mention)) {
    request = own.trim();
  }
  if (request === null) return null;
  return request.length <= MAX_COMMENT_REQUEST_CHARS ? request : request.slice(0, MAX_COMMENT_REQUEST_CHARS);
}

/** The comment without quoted lines and fenced code blocks. */
function ownLines(comment: string): string {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of comment.replace(/\r\n?/g, '\n').split('\n')) {
    const f = /^[ \t]*(`{3,}|~{3,})/.exec(line);
    if (fence !== null) {
      if (f !== null && f[1]![0] === fence[0] && f[1]!.length >= fence.length) fence = null;
      continue;
    }
    if (f !== null) {
      fence = f[1]!;
      continue;
    }
    if (/^[ \t]*>/.test(line)) continue;
    out.push(line);
  }
  return out.join('\n');
}

/** Whether `text` mentions `@login` as GitHub would link it (not inside another word or a longer login). */
function mentions(text: string, login: string): boolean {
  const escaped = login.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^A-Za-z0-9_\`/-])@${escaped}(?![A-Za-z0-9-])`, 'i').test(text);
}

/** The goal of a task a comment on an issue asks for: what the comment asks, then the issue, cut to the goal's limit. */
export function commentGoal(issueGoal: string, request: string, author: string): string {
  const goal = `${request}\n\n(asked by ${author} in a comment on this issue)\n\n${issueGoal}`;
  if (goal.length <= MAX_ISSUE_GOAL_CHARS) return goal;
  const note = '\n\n[the rest of the issue is cut]';
  return goal.slice(0, MAX_ISSUE_GOAL_CHARS - note.length) + note;
}

/** The reply a comment gets from someone who may not steer the agent. */
export function notAllowedCommentReply(login: string): string {
  return `Thanks, @${login}. Only people with write access to this repository can ask the agent for work, so this comment was not passed on to it.`;
}

/** What the API needs to look up at the forge before a comment steers anything. */
export interface ForgeLookup {
  /** The base permission of `login` on `repo` (`admin`, `maintain`, `write`, `triage`, `read`, `none`). */
  permission(repo: string, login: string): Promise<string>;
  /** The head branch of pull request `number`, or null when it lives in another repository (a fork). */
  pullHead(repo: string, number: number): Promise<string | null>;
  /** Comments on issue or pull request `number`. */
  comment(repo: string, number: number, body: string): Promise<void>;
}
