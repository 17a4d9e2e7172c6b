/**
 * Markdown for a forge (pull request bodies, check runs) built from text nobody vouches for: the issue, the
 * model's words, what commands printed, file names. Pure module: the workflow bundle imports it.
 */

/** Shortest code fence (Markdown asks for three). */
const MIN_FENCE = 3;
/** What keeps a mention, a reference or a keyword from being one, without showing. */
const ZERO_WIDTH_SPACE = '\u200b';

/** `text` as a fenced code block it cannot close: the fence is longer than any run of backticks in it. */
export function codeBlock(text: string): string {
  let longest = 0;
  for (const m of text.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  const fence = '`'.repeat(Math.max(MIN_FENCE, longest + 1));
  return `${fence}\n${text}\n${fence}`;
}

/**
 * Plain `text` (a pull request's title, a commit message) made inert where a forge would act on it: no @mention
 * pings anyone, no `#N` or `owner/repo#N` links or closes an issue, and no closing keyword (`fixes`, `closes`,
 * `resolves`, ...) closes one by URL once the commit lands on the default branch.
 */
export function inertText(text: string): string {
  return text
    .replace(/@(?=[A-Za-z0-9])/g, `@${ZERO_WIDTH_SPACE}`)
    .replace(/#(?=\d)/g, `#${ZERO_WIDTH_SPACE}`)
    .replace(/\b(clos|fix|resolv)(?=(e[sd]?|es|ed)?\b)/gi, (m) => `${m[0]}${ZERO_WIDTH_SPACE}${m.slice(1)}`);
}

/**
 * `text` made inert where a forge would act on it in Markdown: as {@link inertText}, and no `<details>` or
 * `<summary>` tag opens or closes a fold of the body around it.
 */
export function inertMarkdown(text: string): string {
  return inertText(text).replace(/<(\/?)(details|summary)\b/gi, '&lt;$1$2');
}
