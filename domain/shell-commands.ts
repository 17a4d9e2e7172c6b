/**
 * What a shell command line runs: its simple commands, the commands that wrappers
 * (`sudo`, `env`, `timeout`, `xargs`, `find -exec`, …) run, and the scripts that
 * `sh -c`, `eval`, `alias` and here-documents fed to a shell hand to another parse.
 *
 * A static reading has limits; where it cannot tell what runs, it says why instead.
 */
import { simpleCommands, type ShellStdin, type ShellWord } from './shell';

/** Why a static reading cannot tell what a command line runs. */
export const OPAQUE_REASONS = {
  unparseable: 'unparseable',
  computedName: 'computed command name',
  scriptFromInput: 'shell reads its script from input',
} as const;

/** One of {@link OPAQUE_REASONS}. */
export type OpaqueReason = (typeof OPAQUE_REASONS)[keyof typeof OPAQUE_REASONS];

/** What a command line runs, as far as a static reading can tell. */
export interface CommandLineReading {
  /** Each simple command, and each command a wrapper runs, as its resolved words joined by single spaces. */
  commands: string[];
  /** Scripts handed to a nested shell (`sh -c`, `eval`, a here-document fed to `bash`), as text. */
  scripts: string[];
  /** The first reason the reading is incomplete, or null when every command was accounted for. */
  opaque: OpaqueReason | null;
}

/** Deepest nesting of scripts in scripts (`sh -c "eval '…'"`) read before giving up. */
export const MAX_SCRIPT_NESTING = 8;

/** Most commands (wrapped ones included) one command line may run before it counts as unreadable. */
export const MAX_COMMANDS_READ = 5_000;

/** Most characters of script, nested ones included, parsed for one command line (bounds the work inside a workflow task). */
export const MAX_CHARS_READ = 100_000;

/** Shells whose `-c` argument, script operand or standard input is a script. */
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'yash', 'posh', 'fish', 'rbash']);

/** Shell options that take the next word as their value. */
const SHELL_VALUED = new Set(['-o', '+o', '-O', '+O', '--rcfile', '--init-file']);

/** Paths that are a shell's own standard input. */
const STDIN_PATHS = new Set(['-', '/dev/stdin', '/dev/fd/0', '/proc/self/fd/0']);

/**
 * Commands that run another command given as their arguments: options that take a value
 * (so the value is not mistaken for the command), and leading operands to skip.
 */
interface Wrapper {
  valued?: string[];
  operands?: number;
  /** `env`, `sudo`: leading NAME=VALUE words are assignments. */
  assignments?: boolean;
}

const WRAPPERS: Record<string, Wrapper> = {
  sudo: { valued: ['-u', '-g', '-C', '-D', '-h', '-p', '-r', '-t', '-T', '-U', '--user', '--group', '--close-from', '--chdir', '--host', '--prompt', '--role', '--type', '--command-timeout', '--other-user'], assignments: true },
  doas: { valued: ['-u', '-C'] },
  env: { valued: ['-u', '--unset', '-C', '--chdir'], assignments: true },
  nice: { valued: ['-n', '--adjustment'] },
  ionice: { valued: ['-c', '-n', '-p', '-P', '-u', '--class', '--classdata'] },
  timeout: { valued: ['-s', '-k', '--signal', '--kill-after'], operands: 1 },
  nohup: {},
  setsid: {},
  stdbuf: { valued: ['-i', '-o', '-e', '--input', '--output', '--error'] },
  exec: { valued: ['-a'] },
  command: {},
  builtin: {},
  time: { valued: ['-f', '-o', '--format', '--output'] },
  chroot: { valued: ['--userspec', '--groups'], operands: 1 },
  busybox: {},
  fakeroot: {},
  unbuffer: {},
  chrt: { operands: 1 },
  taskset: { operands: 1 },
};

/** xargs options that take the next word as their value. */
const XARGS_VALUED = new Set(['-a', '-d', '-E', '-I', '-L', '-n', '-P', '-s', '--arg-file', '--delimiter', '--eof', '--max-lines', '--max-args', '--max-procs', '--max-chars', '--process-slot-var']);

/** watch options that take the next word as their value. */
const WATCH_VALUED = new Set(['-n', '--interval', '-q', '--equexit']);

interface Reading {
  commands: string[];
  scripts: string[];
  opaque: OpaqueReason | null;
  budget: number;
  chars: number;
}

const line = (words: readonly ShellWord[]): string => words.map((w) => w.text).join(' ');

const baseName = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

function flag(r: Reading, reason: OpaqueReason): void {
  r.opaque ??= reason;
}

/** Reads a script: parses it and reads every simple command in it. */
function readScript(r: Reading, source: string, depth: number): void {
  r.chars += source.length;
  if (depth > MAX_SCRIPT_NESTING || r.chars > MAX_CHARS_READ) return flag(r, OPAQUE_REASONS.unparseable);
  if (depth > 0) r.scripts.push(source);
  const commands = simpleCommands(source);
  if (commands === null) return flag(r, OPAQUE_REASONS.unparseable);
  for (const c of commands) readCommand(r, c.words, c.stdin, depth, false);
}

/** Reads a script given as a word: a computed one cannot be read. */
function readScriptWord(r: Reading, word: ShellWord, depth: number): void {
  if (word.dynamic) return flag(r, OPAQUE_REASONS.computedName);
  readScript(r, word.text, depth + 1);
}

/**
 * Reads one simple command: records its command line, then follows what it runs.
 * `inputArgs` says more arguments come from standard input at run time (`xargs`).
 */
function readCommand(r: Reading, words: ShellWord[], stdin: ShellStdin, depth: number, inputArgs: boolean): void {
  if (--r.budget < 0) return flag(r, OPAQUE_REASONS.unparseable);
  if (words.length === 0) return;
  const [name, ...args] = words as [ShellWord, ...ShellWord[]];
  r.commands.push(line(words));
  if (name.dynamic) return flag(r, OPAQUE_REASONS.computedName);
  const base = baseName(name.text);
  if (base !== name.text) r.commands.push(line([{ text: base, dynamic: false }, ...args]));

  const wrapper = WRAPPERS[base];
  if (wrapper) return readWrapped(r, base, wrapper, args, stdin, depth, inputArgs);
  if (SHELLS.has(base)) return readShell(r, args, stdin, depth, inputArgs);
  switch (base) {
    case 'xargs':
      return readXargs(r, args, depth);
    case 'find':
      return readFindExec(r, args, depth);
    case 'eval':
      if (args.some((a) => a.dynamic) || inputArgs) return flag(r, OPAQUE_REASONS.computedName);
      if (args.length > 0) readScript(r, line(args), depth + 1);
      return;
    case 'alias':
      for (const a of args) {
        if (a.dynamic) return flag(r, OPAQUE_REASONS.computedName);
        const eq = a.text.indexOf('=');
        if (eq > 0) readScript(r, a.text.slice(eq + 1), depth + 1);
      }
      return;
    case 'source':
    case '.':
      return readScriptOperand(r, args[0], stdin, depth, inputArgs);
    case 'su':
    case 'runuser':
    case 'script':
      return readSu(r, args, stdin, depth);
    case 'trap':
      return readTrap(r, args, depth);
    case 'watch':
      return readWatch(r, args, stdin, depth);
  }
}

/** Follows a wrapper to the command it runs. */
function readWrapped(r: Reading, base: string, wrapper: Wrapper, args: ShellWord[], stdin: ShellStdin, depth: number, inputArgs: boolean): void {
  const valued = new Set(wrapper.valued ?? []);
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a.dynamic) break;
    if (a.text === '--') {
      i++;
      break;
    }
    if (base === 'env' && (a.text === '-S' || a.text.startsWith('--split-string') || /^-[^-]*S/.test(a.text))) {
      // env -S splits one string into the command and its arguments: read it as a script.
      const split = a.text === '-S' ? args[i + 1] : { text: a.text.replace(/^--split-string=?|^-[^-S]*S/, ''), dynamic: false };
      const rest = args.slice(a.text === '-S' ? i + 2 : i + 1);
      if (!split || split.dynamic || rest.some((w) => w.dynamic)) return flag(r, OPAQUE_REASONS.computedName);
      return readScript(r, [split.text, ...rest.map((w) => w.text)].join(' '), depth + 1);
    }
    if (a.text.startsWith('-') && a.text.length > 1) {
      if (valued.has(a.text)) i++;
      continue;
    }
    if (wrapper.assignments && /^[A-Za-z_][A-Za-z0-9_]*=/.test(a.text)) continue;
    break;
  }
  i += wrapper.operands ?? 0;
  const inner = args.slice(i);
  if (inner.length === 0 && inputArgs) return flag(r, OPAQUE_REASONS.computedName);
  readCommand(r, inner, stdin, depth, inputArgs);
}

/** Reads `sh`/`bash`/… arguments: a `-c` script, a script file, or a script on standard input. */
function readShell(r: Reading, args: ShellWord[], stdin: ShellStdin, depth: number, inputArgs: boolean): void {
  let command = false;
  let fromStdin = false;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a.dynamic) return flag(r, OPAQUE_REASONS.computedName);
    if (a.text === '--' || a.text === '-') {
      if (a.text === '--') i++;
      break;
    }
    if (!/^[-+]/.test(a.text)) break;
    if (SHELL_VALUED.has(a.text)) {
      i++;
      continue;
    }
    if (!a.text.startsWith('--')) {
      if (a.text.includes('c')) command = true;
      if (a.text.includes('s')) fromStdin = true;
    }
  }
  const operand = args[i];
  if (command) {
    if (!operand) return inputArgs ? flag(r, OPAQUE_REASONS.computedName) : undefined;
    return readScriptWord(r, operand, depth);
  }
  if (fromStdin) return readStdinScript(r, stdin, depth);
  readScriptOperand(r, operand, stdin, depth, inputArgs);
}

/** A script file operand (`sh file`, `. file`): a file is the sandbox's business, input or a computed name is not readable. */
function readScriptOperand(r: Reading, operand: ShellWord | undefined, stdin: ShellStdin, depth: number, inputArgs: boolean): void {
  if (!operand) return inputArgs ? flag(r, OPAQUE_REASONS.computedName) : readStdinScript(r, stdin, depth);
  if (operand.dynamic) return flag(r, OPAQUE_REASONS.computedName);
  if (STDIN_PATHS.has(operand.text)) return readStdinScript(r, stdin, depth);
}

/** A shell reading its script from standard input: only a here-document or here-string with known text can be read. */
function readStdinScript(r: Reading, stdin: ShellStdin, depth: number): void {
  if (stdin.kind === 'text') return readScript(r, stdin.text, depth + 1);
  flag(r, OPAQUE_REASONS.scriptFromInput);
}

/** `su -c script`, `runuser -c script`, `script -c command`; without `-c` they start a shell that reads standard input. */
function readSu(r: Reading, args: ShellWord[], stdin: ShellStdin, depth: number): void {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.dynamic) return flag(r, OPAQUE_REASONS.computedName);
    const long = /^--(session-)?command(=|$)/.exec(a.text);
    if (long) {
      const script = long[2] === '=' ? { text: a.text.slice(long[0].length), dynamic: false } : args[i + 1];
      return script ? readScriptWord(r, script, depth) : undefined;
    }
    const c = /^-[a-zA-Z]*c/.exec(a.text);
    if (c) {
      const script = c[0].length === a.text.length ? args[i + 1] : { text: a.text.slice(c[0].length), dynamic: false };
      return script ? readScriptWord(r, script, depth) : undefined;
    }
  }
  readStdinScript(r, stdin, depth);
}

/** `trap 'script' SIGNAL…`: the script runs when the signal (or EXIT) comes. */
function readTrap(r: Reading, args: ShellWord[], depth: number): void {
  const rest = args[0]?.text === '--' ? args.slice(1) : args;
  const script = rest[0];
  if (!script || rest.length < 2 || script.text === '-' || /^-[lp]$/.test(script.text)) return;
  readScriptWord(r, script, depth);
}

/** `watch [options] command…` runs its arguments, joined, through `sh -c` (or directly with `-x`). */
function readWatch(r: Reading, args: ShellWord[], stdin: ShellStdin, depth: number): void {
  let exec = false;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a.dynamic) return flag(r, OPAQUE_REASONS.computedName);
    if (a.text === '--') {
      i++;
      break;
    }
    if (!a.text.startsWith('-') || a.text.length === 1) break;
    if (a.text === '-x' || a.text === '--exec') exec = true;
    if (WATCH_VALUED.has(a.text)) i++;
  }
  const inner = args.slice(i);
  if (inner.length === 0) return;
  if (exec) return readCommand(r, inner, stdin, depth, false);
  if (inner.some((w) => w.dynamic)) return flag(r, OPAQUE_REASONS.computedName);
  readScript(r, line(inner), depth + 1);
}

/** `xargs [options] command…`: the command gets more arguments from input, and `-I R` puts input in place of R. */
function readXargs(r: Reading, args: ShellWord[], depth: number): void {
  let replace: string | null = null;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a.dynamic) return flag(r, OPAQUE_REASONS.computedName);
    if (a.text === '--') {
      i++;
      break;
    }
    if (!a.text.startsWith('-') || a.text.length === 1) break;
    if (a.text === '-I') replace = args[i + 1]?.text ?? '{}';
    else if (a.text.startsWith('-I')) replace = a.text.slice(2);
    else if (a.text === '-i' || a.text === '--replace') replace = '{}';
    else if (a.text.startsWith('-i')) replace = a.text.slice(2);
    else if (a.text.startsWith('--replace=')) replace = a.text.slice('--replace='.length);
    if (XARGS_VALUED.has(a.text)) i++;
  }
  const inner = args.slice(i).map((w) => (replace !== null && w.text.includes(replace) ? { ...w, dynamic: true } : w));
  readCommand(r, inner.length > 0 ? inner : [{ text: 'echo', dynamic: false }], { kind: 'unknown' }, depth, true);
}

/** `find … -exec command… ;` (and `-execdir`, `-ok`, `-okdir`): each command, with `{}` standing for a found path. */
function readFindExec(r: Reading, args: ShellWord[], depth: number): void {
  for (let i = 0; i < args.length; i++) {
    if (!['-exec', '-execdir', '-ok', '-okdir'].includes(args[i]!.text)) continue;
    const inner: ShellWord[] = [];
    for (i++; i < args.length && args[i]!.text !== ';' && args[i]!.text !== '+'; i++) {
      const w = args[i]!;
      inner.push(w.text.includes('{}') ? { ...w, dynamic: true } : w);
    }
    readCommand(r, inner, { kind: 'unknown' }, depth, false);
  }
}

/** Reads a command line: every command it runs, the scripts it hands on, and where reading stopped short. */
export function readCommandLine(source: string): CommandLineReading {
  const r: Reading = { commands: [], scripts: [], opaque: null, budget: MAX_COMMANDS_READ, chars: 0 };
  readScript(r, source, 0);
  return { commands: [...new Set(r.commands)], scripts: [...new Set(r.scripts)], opaque: r.opaque };
}
