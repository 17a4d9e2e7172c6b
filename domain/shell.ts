/**
 * A real shell parse (mvdan/sh, through the pure-JS `mvdan-sh` package) turned into
 * the simple commands it contains, with quotes, escapes and concatenation resolved.
 *
 * The workflow bundle imports this: it must stay deterministic, synchronous and free
 * of Node built-ins, which is why the parser is loaded behind the stand-ins below.
 */

/** One resolved word of a simple command. */
export interface ShellWord {
  /** The word after quote removal; an expansion keeps its source text (`$x`, `$(…)`). */
  text: string;
  /** True when the shell computes part of the word at run time: an expansion, a glob, a brace or tilde expansion. */
  dynamic: boolean;
}

/** Where a simple command's standard input comes from, as far as a parse can tell. */
export type ShellStdin =
  /** A here-document or here-string whose whole text is known. */
  | { kind: 'text'; text: string }
  /** A pipe, a file, the caller's input, or a here-document that expands. */
  | { kind: 'unknown' };

/** One simple command of a script: its words (assignments dropped) and its standard input. */
export interface SimpleCommand {
  words: ShellWord[];
  stdin: ShellStdin;
}

/** Most simple commands one script may hold before it counts as unreadable (bounds the work of a parse). */
export const MAX_SIMPLE_COMMANDS = 2_000;

// The few shapes of mvdan/sh's syntax tree this module reads (field names as in the Go package).
interface Pos {
  Offset(): number;
}
interface SyntaxNode {
  Pos(): Pos;
  End(): Pos;
  [field: string]: any;
}
interface Syntax {
  NewParser(...options: unknown[]): { Parse(src: string, name: string): SyntaxNode };
  Variant(lang: number): unknown;
  LangBash: number;
  LangPOSIX: number;
  NodeType(node: SyntaxNode | null): string;
  Walk(node: SyntaxNode, visit: (node: SyntaxNode | null) => boolean): void;
}

/** Operator numbers of this build of the parser, learnt from sample parses rather than hard-coded. */
interface Operators {
  hdoc: number;
  dashHdoc: number;
  wordHdoc: number;
  /** `<`, `<&` and `<>`: input from a file or a descriptor. */
  input: number[];
}

let loaded: { syntax: Syntax; ops: Operators } | undefined;

type TimerGlobals = { setTimeout: unknown; clearTimeout: unknown };

/**
 * Runs `fn` with inert timers. GopherJS's goroutine scheduler calls `setTimeout`, which
 * inside a workflow is a durable timer: it would add commands to the task's history.
 */
function withInertTimers<T>(fn: () => T): T {
  const g = globalThis as unknown as TimerGlobals;
  const saved = { setTimeout: g.setTimeout, clearTimeout: g.clearTimeout };
  g.setTimeout = () => 0;
  g.clearTimeout = () => undefined;
  try {
    return fn();
  } finally {
    g.setTimeout = saved.setTimeout;
    g.clearTimeout = saved.clearTimeout;
  }
}

/** Loads the parser once per module instance (once per workflow in the sandbox). */
function parser(): { syntax: Syntax; ops: Operators } {
  if (loaded) return loaded;
  const g = globalThis as unknown as { Error: ErrorConstructor };
  const RealError = g.Error;
  // GopherJS assigns Error.stackTraceLimit while it loads; the workflow sandbox freezes Error.
  class LoadingError extends RealError {}
  Object.defineProperty(LoadingError, 'stackTraceLimit', { value: RealError.stackTraceLimit, writable: true });
  g.Error = LoadingError as unknown as ErrorConstructor;
  let syntax: Syntax;
  try {
    syntax = withInertTimers(() => (require('mvdan-sh') as { syntax: Syntax }).syntax);
  } finally {
    g.Error = RealError;
  }
  const redirOp = (src: string): number => syntax.NewParser().Parse(src, '').Stmts[0].Redirs[0].Op as number;
  loaded = {
    syntax,
    ops: {
      hdoc: redirOp('a <<E\nE\n'),
      dashHdoc: redirOp('a <<-E\nE\n'),
      wordHdoc: redirOp('a <<< b'),
      input: [redirOp('a < b'), redirOp('a <& 3'), redirOp('a <> b')],
    },
  };
  return loaded;
}

/** Slices source text by the parser's byte offsets (it counts UTF-8 bytes, JS strings count UTF-16 units). */
function byteSlicer(src: string): (from: number, to: number) => string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(src)) return (from, to) => src.slice(from, to);
  const indexAt: number[] = [];
  let i = 0;
  for (const ch of src) {
    const cp = ch.codePointAt(0)!;
    const bytes = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    for (let b = 0; b < bytes; b++) indexAt.push(i);
    i += ch.length;
  }
  indexAt.push(i);
  return (from, to) => src.slice(indexAt[from] ?? i, indexAt[to] ?? i);
}

/** Decodes the body of a `$'…'` (ANSI-C) string the way bash does. */
export function decodeAnsiC(raw: string): string {
  const simple: Record<string, string> = { a: '\x07', b: '\b', e: '\x1b', E: '\x1b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\', "'": "'", '"': '"', '?': '?' };
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== '\\' || i + 1 >= raw.length) {
      out += c;
      continue;
    }
    const n = raw[++i]!;
    const digits = (re: RegExp, max: number): string => {
      let d = '';
      while (d.length < max && i + 1 < raw.length && re.test(raw[i + 1]!)) d += raw[++i];
      return d;
    };
    if (n in simple) out += simple[n];
    else if (n === 'x' || n === 'u' || n === 'U') {
      const hex = digits(/[0-9a-fA-F]/, n === 'x' ? 2 : n === 'u' ? 4 : 8);
      const cp = parseInt(hex, 16);
      out += hex === '' ? `\\${n}` : cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
    } else if (n >= '0' && n <= '7') {
      out += String.fromCharCode(parseInt(n + digits(/[0-7]/, 2), 8) & 0xff);
    } else if (n === 'c' && i + 1 < raw.length) {
      out += String.fromCharCode(raw[++i]!.charCodeAt(0) & 0x1f);
    } else out += `\\${n}`;
  }
  return out;
}

/** Removes backslash escapes: every escape when unquoted, only those of `escapable` elsewhere. */
function unescape(raw: string, escapable: string | null): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    const n = raw[i + 1];
    if (c === '\\' && n !== undefined && (escapable === null || escapable.includes(n))) {
      if (n !== '\n') out += n;
      i++;
    } else out += c;
  }
  return out;
}

/** True when unquoted literal text holds a glob, a brace expansion or a leading tilde the shell would expand. */
function expandsUnquoted(raw: string, atWordStart: boolean): boolean {
  if (atWordStart && raw.startsWith('~')) return true;
  let bracket = false;
  let brace = 0;
  let braceList = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '*' || c === '?') return true;
    if (c === '[') bracket = true;
    else if (c === ']' && bracket) return true;
    else if (c === '{') brace++;
    else if (brace > 0 && (c === ',' || (c === '.' && raw[i + 1] === '.'))) braceList = true;
    else if (c === '}' && brace > 0 && braceList) return true;
  }
  return false;
}

/** Reads parse trees of one source text into resolved words. */
class Resolver {
  private readonly slice: (from: number, to: number) => string;
  constructor(
    private readonly syntax: Syntax,
    src: string,
  ) {
    this.slice = byteSlicer(src);
  }

  source(node: SyntaxNode): string {
    return this.slice(node.Pos().Offset(), node.End().Offset());
  }

  /** A word, unquoted context. */
  word(word: SyntaxNode): ShellWord {
    let text = '';
    let dynamic = false;
    (word.Parts as SyntaxNode[]).forEach((part, index) => {
      const type = this.syntax.NodeType(part);
      if (type === 'Lit') {
        const raw = part.Value as string;
        if (expandsUnquoted(raw, index === 0)) dynamic = true;
        text += unescape(raw, null);
      } else if (type === 'SglQuoted') {
        text += part.Dollar ? decodeAnsiC(part.Value as string) : (part.Value as string);
      } else if (type === 'DblQuoted') {
        const inner = this.quoted(part.Parts as SyntaxNode[], '$`"\\\n');
        text += inner.text;
        dynamic ||= inner.dynamic;
      } else {
        // ParamExp, CmdSubst, ArithmExp, ProcSubst, ExtGlob, or anything newer: computed at run time.
        text += this.source(part);
        dynamic = true;
      }
    });
    return { text, dynamic };
  }

  /** Parts inside double quotes or an unquoted here-document: only expansions and some escapes are special. */
  quoted(parts: SyntaxNode[], escapable: string): ShellWord {
    let text = '';
    let dynamic = false;
    for (const part of parts) {
      if (this.syntax.NodeType(part) === 'Lit') text += unescape(part.Value as string, escapable);
      else {
        text += this.source(part);
        dynamic = true;
      }
    }
    return { text, dynamic };
  }

  /** Standard input given by a statement's redirections (the last one wins, as in the shell). */
  stdin(redirs: SyntaxNode[], ops: Operators, inherited: ShellStdin): ShellStdin {
    let stdin = inherited;
    for (const r of redirs) {
      const fd = r.N ? (r.N.Value as string) : null;
      const op = r.Op as number;
      if (op === ops.hdoc || op === ops.dashHdoc) {
        if (fd !== null && fd !== '0') continue;
        const delimiter = r.Word as SyntaxNode;
        const literal = (delimiter.Parts as SyntaxNode[]).some((p) => this.syntax.NodeType(p) !== 'Lit' || (p.Value as string).includes('\\'));
        const body = r.Hdoc as SyntaxNode | null;
        const read = !body ? { text: '', dynamic: false } : literal ? { text: this.source(body), dynamic: false } : this.quoted(body.Parts as SyntaxNode[], '$`\\\n');
        const text = op === ops.dashHdoc ? read.text.replace(/^\t+/gm, '') : read.text;
        stdin = read.dynamic ? { kind: 'unknown' } : { kind: 'text', text };
      } else if (op === ops.wordHdoc) {
        if (fd !== null && fd !== '0') continue;
        const w = this.word(r.Word as SyntaxNode);
        stdin = w.dynamic ? { kind: 'unknown' } : { kind: 'text', text: `${w.text}\n` };
      } else if ((fd === null || fd === '0') && ops.input.includes(op)) {
        stdin = { kind: 'unknown' };
      }
    }
    return stdin;
  }
}

/** Every simple command in one parse tree, in source order, nested ones (`$(…)`, bodies) included. */
function commandsOf(syntax: Syntax, ops: Operators, src: string, file: SyntaxNode): SimpleCommand[] | null {
  const resolver = new Resolver(syntax, src);
  const out: SimpleCommand[] = [];
  let tooMany = false;
  syntax.Walk(file, (node) => {
    if (node === null || tooMany || syntax.NodeType(node) !== 'Stmt' || !node.Cmd) return !tooMany;
    const cmd = node.Cmd as SyntaxNode;
    const type = syntax.NodeType(cmd);
    let words: ShellWord[] | null = null;
    if (type === 'CallExpr') words = (cmd.Args as SyntaxNode[]).map((w) => resolver.word(w));
    else if (type === 'DeclClause') {
      // export/declare/local/readonly/typeset: matched as a command line; values with `$(…)` are walked below.
      words = [{ text: cmd.Variant.Value as string, dynamic: false }, ...(cmd.Args as SyntaxNode[]).map((a) => ({ text: resolver.source(a), dynamic: false }))];
    }
    if (words && words.length > 0) {
      out.push({ words, stdin: resolver.stdin(node.Redirs as SyntaxNode[], ops, { kind: 'unknown' }) });
      if (out.length > MAX_SIMPLE_COMMANDS) tooMany = true;
    }
    return !tooMany;
  });
  return tooMany ? null : out;
}

/**
 * The simple commands of a script, or null when it cannot be parsed.
 *
 * The script is read both as bash and as POSIX sh (the sandbox runs `/bin/sh -c`, which may be
 * either): `((rm -rf /))` is arithmetic to bash but two subshells to dash, so both readings count.
 * It is unparseable only when neither reading succeeds.
 */
export function simpleCommands(src: string): SimpleCommand[] | null {
  const { syntax, ops } = parser();
  let parsed = 0;
  const out: SimpleCommand[] = [];
  for (const lang of [syntax.LangBash, syntax.LangPOSIX]) {
    let commands: SimpleCommand[] | null;
    try {
      commands = withInertTimers(() => commandsOf(syntax, ops, src, syntax.NewParser(syntax.Variant(lang)).Parse(src, '')));
    } catch {
      // A syntax error (mvdan-sh throws a Go error object, not an Error) or a parser failure.
      continue;
    }
    if (commands === null) return null;
    parsed++;
    out.push(...commands);
  }
  return parsed === 0 ? null : out;
}
