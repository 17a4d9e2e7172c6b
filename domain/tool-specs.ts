/**
 * What the coding agent's tools are: their declarations (JSON Schemas the model sees) and the
 * strict check of the arguments a model sends.
 *
 * Pure module (no Node built-ins, no I/O): the task workflow imports it to validate a tool call
 * and gate the paths it touches before any activity runs. The schemas are the one source of the
 * argument shapes; the validator interprets them and the argument types are inferred from them.
 */
import type { ToolDeclaration } from '../activities/llm/types';

/** Tools executed in the task's sandbox by `executeSandboxTool`. */
export const SANDBOX_TOOLS = ['list_dir', 'read_file', 'search', 'write_file', 'edit_file', 'run', 'git_diff'] as const;
/** Tools the workflow itself handles: they end a turn with a question, an approval request or the result. */
export const CONTROL_TOOLS = ['ask_human', 'request_approval', 'request_network', 'finish'] as const;

/** One of {@link SANDBOX_TOOLS}. */
export type SandboxToolName = (typeof SANDBOX_TOOLS)[number];
/** One of {@link CONTROL_TOOLS}. */
export type ControlToolName = (typeof CONTROL_TOOLS)[number];
/** Any tool the model may call. */
export type ToolName = SandboxToolName | ControlToolName;

/** Longest path a tool accepts, in characters. */
export const MAX_TOOL_PATH_CHARS = 1_024;
/** `max_results` of `search` when the model names none. */
export const SEARCH_DEFAULT_RESULTS = 100;
/** Largest `max_results` of `search`. */
export const SEARCH_MAX_RESULTS = 1_000;
/** Largest `content` of `write_file` and `old_string`/`new_string` of `edit_file`, in characters. */
export const MAX_FILE_ARG_CHARS = 2_000_000;

/** The JSON Schema keywords a property may use; {@link validateToolArgs} checks every one of them. */
interface PropertySchema {
  type: 'string' | 'integer' | 'boolean';
  description: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
}

/** The shape of every tool's `parameters`. */
interface ObjectSchema {
  type: 'object';
  properties: Record<string, PropertySchema>;
  required: readonly string[];
  additionalProperties: false;
}

const PATH_RULE = 'relative to the repository root, e.g. "src/index.ts"; absolute paths and paths leaving the repository are refused';

const LIST_DIR = {
  type: 'object',
  properties: {
    path: { type: 'string', description: `Directory to list, ${PATH_RULE}. Default "." (the root).`, minLength: 1, maxLength: MAX_TOOL_PATH_CHARS },
    depth: { type: 'integer', description: 'Levels to descend: 1 lists the direct entries only (default), 3 at most.', minimum: 1, maximum: 3 },
  },
  required: [],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const READ_FILE = {
  type: 'object',
  properties: {
    path: { type: 'string', description: `File to read, ${PATH_RULE}.`, minLength: 1, maxLength: MAX_TOOL_PATH_CHARS },
    start_line: { type: 'integer', description: 'First line to show, 1-based (default 1).', minimum: 1 },
    end_line: { type: 'integer', description: 'Last line to show, 1-based and inclusive (default: the last line of the file).', minimum: 1 },
  },
  required: ['path'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const SEARCH = {
  type: 'object',
  properties: {
    pattern: {
      type: 'string',
      description:
        'Regular expression to look for, matched line by line (POSIX extended syntax as in `grep -E`, or ripgrep syntax where ripgrep is installed: keep to their common subset, e.g. [0-9] rather than \\d, no look-around).',
      minLength: 1,
      maxLength: 1_000,
    },
    path: { type: 'string', description: `File or directory to search, ${PATH_RULE}. Default "." (the whole repository).`, minLength: 1, maxLength: MAX_TOOL_PATH_CHARS },
    glob: { type: 'string', description: 'Only search files whose base name matches this glob, e.g. "*.ts" (no "/": put directories in path).', minLength: 1, maxLength: 200 },
    max_results: {
      type: 'integer',
      description: `Most matching lines to return (default ${SEARCH_DEFAULT_RESULTS}, at most ${SEARCH_MAX_RESULTS}).`,
      minimum: 1,
      maximum: SEARCH_MAX_RESULTS,
    },
  },
  required: ['pattern'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const WRITE_FILE = {
  type: 'object',
  properties: {
    path: { type: 'string', description: `File to write, ${PATH_RULE}. Missing directories are created.`, minLength: 1, maxLength: MAX_TOOL_PATH_CHARS },
    content: { type: 'string', description: 'The complete new content of the file.', maxLength: MAX_FILE_ARG_CHARS },
  },
  required: ['path', 'content'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const EDIT_FILE = {
  type: 'object',
  properties: {
    path: { type: 'string', description: `File to edit, ${PATH_RULE}.`, minLength: 1, maxLength: MAX_TOOL_PATH_CHARS },
    old_string: {
      type: 'string',
      description:
        'Exact text to replace, character for character (whitespace and indentation included, without the line-number prefixes read_file shows). Unless replace_all is true it must occur exactly once: include enough surrounding lines to make it unique.',
      minLength: 1,
      maxLength: MAX_FILE_ARG_CHARS,
    },
    new_string: { type: 'string', description: 'Text to put in its place (may be empty to delete old_string).', maxLength: MAX_FILE_ARG_CHARS },
    replace_all: { type: 'boolean', description: 'Replace every occurrence of old_string instead of exactly one (default false).' },
  },
  required: ['path', 'old_string', 'new_string'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const RUN = {
  type: 'object',
  properties: {
    command: {
      type: 'string',
      description: 'Shell command (run with /bin/sh -c in the repository root, no input, no network unless the task allows it). Output is stdout and stderr combined.',
      minLength: 1,
      maxLength: 20_000,
    },
    timeout_seconds: { type: 'integer', description: 'Seconds before the command is killed (default and upper limit are set by the task).', minimum: 1, maximum: 86_400 },
  },
  required: ['command'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const GIT_DIFF = {
  type: 'object',
  properties: {
    path: { type: 'string', description: `Limit the diff to this file or directory, ${PATH_RULE}. Default: the whole repository.`, minLength: 1, maxLength: MAX_TOOL_PATH_CHARS },
  },
  required: [],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const ASK_HUMAN = {
  type: 'object',
  properties: {
    question: { type: 'string', description: 'The question, self-contained: the human may not have followed the task.', minLength: 1, maxLength: 8_000 },
  },
  required: ['question'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const REQUEST_APPROVAL = {
  type: 'object',
  properties: {
    action: { type: 'string', description: 'What you want to do, precisely (the command, or the files and the change).', minLength: 1, maxLength: 4_000 },
    reason: { type: 'string', description: 'Why it is needed for the task, and what could go wrong.', minLength: 1, maxLength: 8_000 },
  },
  required: ['action', 'reason'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const REQUEST_NETWORK = {
  type: 'object',
  properties: {
    domain: { type: 'string', description: 'The one domain to reach, e.g. "registry.example.org" (no scheme, port, path or wildcard).', minLength: 1, maxLength: 253 },
    reason: { type: 'string', description: 'Why the task needs it (which command, what it fetches).', minLength: 1, maxLength: 4_000 },
  },
  required: ['domain', 'reason'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

const FINISH = {
  type: 'object',
  properties: {
    summary: { type: 'string', description: 'What you changed and why, for the reviewer.', minLength: 1, maxLength: 20_000 },
    risks: { type: 'string', description: 'What could break or was not verified ("none known" if so).', minLength: 1, maxLength: 20_000 },
    how_to_test: { type: 'string', description: 'Commands or steps a reviewer can follow to check the change.', minLength: 1, maxLength: 20_000 },
  },
  required: ['summary', 'risks', 'how_to_test'],
  additionalProperties: false,
} as const satisfies ObjectSchema;

/** Argument schema of every tool, by name. */
const SCHEMAS = {
  list_dir: LIST_DIR,
  read_file: READ_FILE,
  search: SEARCH,
  write_file: WRITE_FILE,
  edit_file: EDIT_FILE,
  run: RUN,
  git_diff: GIT_DIFF,
  ask_human: ASK_HUMAN,
  request_approval: REQUEST_APPROVAL,
  request_network: REQUEST_NETWORK,
  finish: FINISH,
} as const satisfies Record<ToolName, ObjectSchema>;

const DESCRIPTIONS: Record<ToolName, string> = {
  list_dir:
    'List the files and directories under a directory of the repository, one repository-relative path per line; directories end with "/", symbolic links with "@". .git and node_modules are shown but not descended into.',
  read_file:
    'Read a text file of the repository. Each line is prefixed with its 1-based number, like "  12| text" (the prefix is not part of the file). Use start_line/end_line to read part of a large file.',
  search:
    'Search file contents under a path for a regular expression, like `grep -rnE`. Returns "path:line:text" for each matching line; .git and node_modules are skipped, and so are binary files.',
  write_file: 'Create a file, or replace its whole content. Prefer edit_file for changing part of an existing file.',
  edit_file:
    'Replace an exact piece of text in an existing file. Fails, changing nothing, when old_string is not found, or occurs more than once while replace_all is false (then add surrounding lines to old_string to make it unique). Read the file first.',
  run: 'Run a shell command in the repository root (build, tests, formatters, scripts) and return its output and exit code. Long output is cut in the middle: filter it (grep, tail) or redirect it to a file when you need a particular part.',
  git_diff: 'Show what changed in the working copy since the last commit: a status line per changed file, the diff of tracked files, and the content of new untracked files.',
  ask_human:
    'Ask the human who owns the task a question and wait for the answer. Use it when the task is ambiguous or you need information you cannot find in the repository; do not use it for permission (use request_approval).',
  request_approval:
    'Ask a human to approve an action before you take it (something risky, irreversible, or outside what the task asked for) and wait for the decision.',
  request_network:
    'Ask a human to allow this task to reach one more domain through the egress proxy, when a command failed because a request was refused (the refusal note names the hosts), and wait for the decision. Only domains the operator permits can be granted.',
  finish: 'End the task: the working copy as it is now is the result. Call it once, when the change is complete and checked.',
};

/** Every tool the model is offered, sandbox tools first. */
export const TOOL_DECLARATIONS: ToolDeclaration[] = [...SANDBOX_TOOLS, ...CONTROL_TOOLS].map((name) => ({
  name,
  description: DESCRIPTIONS[name],
  parameters: SCHEMAS[name],
}));

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type ValueOf<P> = P extends { type: 'string' } ? string : P extends { type: 'integer' } ? number : P extends { type: 'boolean' } ? boolean : never;
/** The arguments object a schema describes: required properties required, the others optional. */
type ArgsOf<S extends ObjectSchema> = Simplify<
  { -readonly [K in keyof S['properties'] as K extends S['required'][number] ? K : never]: ValueOf<S['properties'][K]> } & {
    -readonly [K in keyof S['properties'] as K extends S['required'][number] ? never : K]?: ValueOf<S['properties'][K]>;
  }
>;

/**
 * Validated arguments of each tool. Paths come back normalised (`./src//a.ts` is `src/a.ts`), and
 * the defaults the schemas describe are filled in where they do not depend on the task.
 */
export interface ToolArgs {
  list_dir: Simplify<ArgsOf<typeof LIST_DIR> & { path: string; depth: number }>;
  read_file: ArgsOf<typeof READ_FILE>;
  search: Simplify<ArgsOf<typeof SEARCH> & { path: string; max_results: number }>;
  write_file: ArgsOf<typeof WRITE_FILE>;
  edit_file: Simplify<ArgsOf<typeof EDIT_FILE> & { replace_all: boolean }>;
  run: ArgsOf<typeof RUN>;
  git_diff: Simplify<ArgsOf<typeof GIT_DIFF> & { path: string }>;
  ask_human: ArgsOf<typeof ASK_HUMAN>;
  request_approval: ArgsOf<typeof REQUEST_APPROVAL>;
  request_network: ArgsOf<typeof REQUEST_NETWORK>;
  finish: ArgsOf<typeof FINISH>;
}

/** A call of one of the tools `K` whose arguments passed {@link validateToolArgs}; `name` narrows `args`. */
export type ValidToolCall<K extends ToolName = ToolName> = { [P in K]: { ok: true; name: P; args: ToolArgs[P] } }[K];

/** The answer of {@link validateToolArgs}: the typed call, or an error written for the model to correct itself. */
export type ToolArgsValidation = ValidToolCall | { ok: false; error: string };

/** True for the names of {@link SANDBOX_TOOLS}. */
export function isSandboxTool(name: string): name is SandboxToolName {
  return (SANDBOX_TOOLS as readonly string[]).includes(name);
}

/** True for the names of {@link CONTROL_TOOLS}. */
export function isControlTool(name: string): name is ControlToolName {
  return (CONTROL_TOOLS as readonly string[]).includes(name);
}

/**
 * The repository-relative form of a path a model gave (`./a//b/../c` is `a/c`, the root is `.`),
 * or why it is refused: empty, absolute, containing NUL, or leaving the repository with `..`.
 * Symbolic links are not seen here; the sandbox drivers check those when the file is touched.
 */
export function normalizeToolPath(input: string): { ok: true; path: string } | { ok: false; error: string } {
  if (input.length === 0) return { ok: false, error: 'is empty; give a path relative to the repository root, or "." for the root' };
  if (input.includes('\0')) return { ok: false, error: 'contains a NUL character' };
  if (input.startsWith('/')) {
    return { ok: false, error: `is absolute (${JSON.stringify(clip(input))}); give it relative to the repository root, e.g. "src/index.ts"` };
  }
  const parts: string[] = [];
  for (const part of input.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) return { ok: false, error: `leaves the repository (${JSON.stringify(clip(input))}); only files inside it can be used` };
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  return { ok: true, path: parts.length === 0 ? '.' : parts.join('/') };
}

/**
 * Check a model's arguments for tool `name` strictly against its schema (types, required and
 * unknown fields, lengths, ranges) and the rules a schema cannot say (paths inside the
 * repository, line ranges in order, an edit that changes something). Never throws.
 */
export function validateToolArgs<K extends ToolName>(name: K, args: unknown): ValidToolCall<K> | { ok: false; error: string };
export function validateToolArgs(name: string, args: unknown): ToolArgsValidation;
export function validateToolArgs(name: string, args: unknown): ToolArgsValidation {
  if (!isSandboxTool(name) && !isControlTool(name)) {
    return { ok: false, error: `unknown tool ${JSON.stringify(clip(name))}; the tools are ${[...SANDBOX_TOOLS, ...CONTROL_TOOLS].join(', ')}` };
  }
  const schema: ObjectSchema = SCHEMAS[name];
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    return { ok: false, error: `invalid arguments for ${name}: expected a JSON object, got ${describe(args)}` };
  }
  const record = args as Record<string, unknown>;
  const problems = checkSchema(schema, record);
  if (problems.length === 0) problems.push(...refine(name, record));
  if (problems.length > 0) return { ok: false, error: `invalid arguments for ${name}: ${problems.join('; ')}` };
  return { ok: true, name, args: withDefaults(name, record) } as ValidToolCall;
}

/** Problems of `args` against `schema`, one message per field. */
function checkSchema(schema: ObjectSchema, args: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const unknown = Object.keys(args).filter((k) => !Object.prototype.hasOwnProperty.call(schema.properties, k));
  if (unknown.length > 0) {
    const known = Object.keys(schema.properties);
    problems.push(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(clip(k))).join(', ')} (allowed: ${known.length > 0 ? known.join(', ') : 'none'})`);
  }
  for (const field of schema.required) {
    if (args[field] === undefined) problems.push(`${field}: required`);
  }
  for (const [field, prop] of Object.entries(schema.properties)) {
    const value = args[field];
    if (value === undefined) continue;
    const problem = checkValue(prop, value);
    if (problem !== null) problems.push(`${field}: ${problem}`);
  }
  return problems;
}

function checkValue(prop: PropertySchema, value: unknown): string | null {
  switch (prop.type) {
    case 'string':
      if (typeof value !== 'string') return `must be a string, got ${describe(value)}`;
      if (prop.minLength !== undefined && value.length < prop.minLength) return prop.minLength === 1 ? 'must not be empty' : `must be at least ${prop.minLength} characters`;
      if (prop.maxLength !== undefined && value.length > prop.maxLength) return `must be at most ${prop.maxLength} characters, got ${value.length}`;
      return null;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return `must be an integer, got ${describe(value)}`;
      if (prop.minimum !== undefined && value < prop.minimum) return `must be at least ${prop.minimum}, got ${value}`;
      if (prop.maximum !== undefined && value > prop.maximum) return `must be at most ${prop.maximum}, got ${value}`;
      return null;
    case 'boolean':
      return typeof value === 'boolean' ? null : `must be true or false, got ${describe(value)}`;
  }
}

/** Rules beyond the schema; runs only on arguments that already match it. */
function refine(name: ToolName, args: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (typeof args.path === 'string') {
    const p = normalizeToolPath(args.path);
    if (!p.ok) problems.push(`path ${p.error}`);
    else if (p.path === '.' && (name === 'read_file' || name === 'write_file' || name === 'edit_file')) problems.push('path must name a file, not the repository root');
  }
  const notBlank = (field: string): void => {
    if (typeof args[field] === 'string' && (args[field] as string).trim() === '') problems.push(`${field}: must not be blank`);
  };
  switch (name) {
    case 'read_file':
      if (typeof args.start_line === 'number' && typeof args.end_line === 'number' && args.end_line < args.start_line) {
        problems.push(`end_line (${args.end_line}) is before start_line (${args.start_line})`);
      }
      break;
    case 'search':
      if (typeof args.pattern === 'string' && /[\r\n]/.test(args.pattern)) problems.push('pattern: must be a single line (matching is line by line)');
      if (typeof args.glob === 'string' && args.glob.includes('/')) problems.push('glob: matches file base names only; put the directory in path instead');
      break;
    case 'edit_file':
      if (args.old_string === args.new_string) problems.push('old_string and new_string are the same: the edit would change nothing');
      break;
    case 'run':
      notBlank('command');
      break;
    case 'ask_human':
      notBlank('question');
      break;
    case 'request_approval':
      notBlank('action');
      notBlank('reason');
      break;
    case 'finish':
      notBlank('summary');
      notBlank('risks');
      notBlank('how_to_test');
      break;
    default:
      break;
  }
  return problems;
}

/** A copy of valid arguments with paths normalised and task-independent defaults filled in. */
function withDefaults(name: ToolName, args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...args };
  if (typeof out.path === 'string') out.path = (normalizeToolPath(out.path) as { path: string }).path;
  switch (name) {
    case 'list_dir':
      out.path ??= '.';
      out.depth ??= 1;
      break;
    case 'search':
      out.path ??= '.';
      out.max_results ??= SEARCH_DEFAULT_RESULTS;
      break;
    case 'edit_file':
      out.replace_all ??= false;
      break;
    case 'git_diff':
      out.path ??= '.';
      break;
    default:
      break;
  }
  return out;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `a string (${JSON.stringify(clip(value, 40))})`;
  if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
