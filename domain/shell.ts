/**
 * A real shell parse (mvdan/sh, through the pure-JS `mvdan-sh` package) turned into
 * the simple commands it contains, with quotes, escapes and concatenation resolved.
 *
 * The workflow bundle imports this: it must stay deterministic, synchronous and free
 * of Node built-ins, which is why the parser is loaded behind stand-ins (`shell-parser.ts`).
 */
import { items, parser, withInertTimers, type GoValue, type Kinds, type Operators, type Parser } from './shell-parser';

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

/**
 * Deepest nesting of brackets (subshells, groups, substitutions, arithmetic, tests) a script may have before it
 * counts as unreadable: the parser recurses once per level, and its stack runs out some hundreds of levels down
 * (fewer on a main thread, more once its code is compiled). Scripts people write nest a handful.
 */
export const MAX_NESTING_DEPTH = 32;

/** How deep brackets nest in `src`, quotes ignored (a bracket in a string counts too, which only errs on caution). */
function nestingDepth(src: string): number {
  let depth = 0;
  let deepest = 0;
  for (const c of src) {
    if (c === '(' || c === '{' || c === '[') deepest = Math.max(deepest, ++depth);
    else if ((c === ')' || c === '}' || c === ']') && depth > 0) depth--;
  }
  return deepest;
}

/** True for a nil pointer or a nil interface. */
function isNil(v: GoValue | null | undefined): v is null | undefined {
  return v == null || typeof v.constructor?.string !== 'string' || v === v.constructor.nil;
}

/** The syntax node type of a value (`CallExpr`, `Lit`, …). */
function nodeType(v: GoValue): string {
  return v.constructor.string.replace(/^\*syntax\./, '');
}

/** A Go string (GopherJS keeps its UTF-8 bytes, one per UTF-16 unit) as a JS string. */
function goString(bytes: string): string {
  if (/^[\x00-\x7f]*$/.test(bytes)) return bytes;
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes.charCodeAt(i);
    const len = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    let cp = len === 1 ? b : b & (0xff >> (len + 1));
    for (let k = 1; k < len; k++) cp = (cp << 6) | (bytes.charCodeAt(i + k) & 0x3f);
    out += String.fromCodePoint(cp <= 0x10ffff ? cp : 0xfffd);
    i += len;
  }
  return out;
}

/**
 * Visits every node below `v` (pointers, interfaces and slices of them), parents first, as syntax.Walk does. With a
 * stack of its own, not recursion: a chain of thousands of pipes is a tree that deep.
 */
function walk(kinds: Kinds, v: GoValue | null | undefined, visit: (node: GoValue) => boolean): void {
  const pending: (GoValue | null | undefined)[] = [v];
  while (pending.length > 0) {
    const node = pending.pop();
    if (isNil(node) || !visit(node)) continue;
    const children: (GoValue | null | undefined)[] = [];
    for (const f of node.constructor.elem?.fields ?? []) {
      const x = node[f.prop];
      if (f.typ.kind === kinds.ptr || f.typ.kind === kinds.iface) children.push(x);
      else if (f.typ.kind === kinds.slice && f.typ.elem && (f.typ.elem.kind === kinds.ptr || f.typ.elem.kind === kinds.iface)) children.push(...items(x));
    }
    // Last pushed, first visited: children in field order, as the recursion visited them.
    for (let i = children.length - 1; i >= 0; i--) pending.push(children[i]);
  }
}

/** Slices source text by the parser's byte offsets (it counts UTF-8 bytes, JS strings count UTF-16 units). */
function byteSlicer(src: string): (from: number, to: number) => string {
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

/** True when unquoted literal text holds a glob, a brace expansion or a tilde the shell would expand into something unknown. */
function expandsUnquoted(raw: string, atWordStart: boolean): boolean {
  // `~/bin/x` still names `x`; a bare `~` or `~user` is a computed directory, and zsh expands `=rm` to rm's path.
  if (atWordStart && (/^~[^/]*$/.test(raw) || raw.startsWith('='))) return true;
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
  constructor(src: string) {
    this.slice = byteSlicer(src);
  }

  source(node: GoValue): string {
    return this.slice(node.Pos().Offset(), node.End().Offset());
  }

  /** A word, unquoted context. */
  word(word: GoValue): ShellWord {
    let text = '';
    let dynamic = false;
    items(word.Parts).forEach((part, index) => {
      const type = nodeType(part);
      if (type === 'Lit') {
        const raw = goString(part.Value);
        if (expandsUnquoted(raw, index === 0)) dynamic = true;
        text += unescape(raw, null);
      } else if (type === 'SglQuoted') {
        const value = goString(part.Value);
        text += part.Dollar ? decodeAnsiC(value) : value;
      } else if (type === 'DblQuoted') {
        const inner = this.quoted(items(part.Parts), '$`"\\\n');
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
  quoted(parts: GoValue[], escapable: string): ShellWord {
    let text = '';
    let dynamic = false;
    for (const part of parts) {
      if (nodeType(part) === 'Lit') text += unescape(goString(part.Value), escapable);
      else {
        text += this.source(part);
        dynamic = true;
      }
    }
    return { text, dynamic };
  }

  /** Standard input given by a statement's redirections (the last one wins, as in the shell). */
  stdin(redirs: GoValue[], ops: Operators, inherited: ShellStdin): ShellStdin {
    let stdin = inherited;
    for (const r of redirs) {
      const fd = isNil(r.N) ? null : goString(r.N.Value);
      const op = r.Op as number;
      if (op === ops.hdoc || op === ops.dashHdoc) {
        if (fd !== null && fd !== '0') continue;
        const literal = items(r.Word.Parts).some((p) => nodeType(p) !== 'Lit' || goString(p.Value).includes('\\'));
        const body = r.Hdoc as GoValue | null;
        const read = isNil(body) ? { text: '', dynamic: false } : this.quoted(items(body.Parts), literal ? '' : '$`\\\n');
        const text = op === ops.dashHdoc ? read.text.replace(/^\t+/gm, '') : read.text;
        stdin = read.dynamic ? { kind: 'unknown' } : { kind: 'text', text };
      } else if (op === ops.wordHdoc) {
        if (fd !== null && fd !== '0') continue;
        const w = this.word(r.Word);
        stdin = w.dynamic ? { kind: 'unknown' } : { kind: 'text', text: `${w.text}\n` };
      } else if ((fd === null || fd === '0') && ops.input.includes(op)) {
        stdin = { kind: 'unknown' };
      }
    }
    return stdin;
  }
}

/** Every simple command in one parse tree, nested ones (`$(…)`, bodies) included, or null past the bound. */
function commandsOf({ kinds, ops }: Parser, src: string, file: GoValue): SimpleCommand[] | null {
  const resolver = new Resolver(src);
  const out: SimpleCommand[] = [];
  let tooMany = false;
  walk(kinds, file, (node) => {
    if (tooMany) return false;
    if (nodeType(node) !== 'Stmt' || isNil(node.Cmd)) return true;
    const cmd = node.Cmd as GoValue;
    const type = nodeType(cmd);
    let words: ShellWord[] | null = null;
    if (type === 'CallExpr') words = items(cmd.Args).map((w) => resolver.word(w));
    else if (type === 'DeclClause') {
      // export/declare/local/readonly/typeset: matched as a command line; values with `$(…)` are walked below.
      words = [{ text: goString(cmd.Variant.Value), dynamic: false }, ...items(cmd.Args).map((a) => ({ text: resolver.source(a), dynamic: false }))];
    }
    if (words && words.length > 0) {
      out.push({ words, stdin: resolver.stdin(items(node.Redirs), ops, { kind: 'unknown' }) });
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
  // Deeper than this, a parse would end where the stack does, which depends on how warm the worker's compiled code
  // is: the answer must depend on the script alone, so such a script is unreadable whatever the stack.
  if (nestingDepth(src) > MAX_NESTING_DEPTH) return null;
  const p = parser();
  const { syntax } = p;
  let parsed = 0;
  const out: SimpleCommand[] = [];
  for (const lang of [syntax.LangBash, syntax.LangPOSIX]) {
    let commands: SimpleCommand[] | null;
    try {
      commands = withInertTimers(() => commandsOf(p, src, syntax.NewParser(syntax.Variant(lang)).Parse(src, '').__internal_object__));
    } catch (err) {
      // A syntax error: mvdan-sh throws a Go error object, not an Error; this reading fails and the other may stand.
      // An Error (a stack overflow, a parser failure) says nothing of the script: the whole of it is unreadable.
      if (err instanceof Error) return null;
      continue;
    }
    if (commands === null) return null;
    parsed++;
    out.push(...commands);
  }
  return parsed === 0 ? null : out;
}
