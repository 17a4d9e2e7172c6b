/**
 * The shell parser (mvdan/sh compiled to JS by GopherJS, the `mvdan-sh` package) and the shapes of its Go values.
 *
 * The package is about 1.5 MB of code whose load builds thousands of objects. Workflows run in one reusable V8
 * context whose module cache is per workflow, so a module evaluated by a workflow costs every cached workflow its
 * own copy: the workflow bundle preloads this module instead (`shell-preload.ts`), which shares one parser with
 * all of them. That is safe because a parse keeps no state between calls (a syntax error, a timeout or a stack
 * overflow midway leaves none behind), and because a script deep enough for its reading to depend on the stack (on
 * how warm the shared code is) is refused before it is parsed (`MAX_NESTING_DEPTH` in shell.ts), so a reading is
 * the same on every worker. What this module exports must stay functions: the worker freezes a preloaded module's
 * exports.
 */

// mvdan-sh wraps every Go value in a JS object whose property reads convert on each access,
// which costs about a millisecond per node. The tree is read instead from the Go values
// themselves (GopherJS structs, slices and interfaces as plain JS objects), which is a
// hundred times faster; the package is frozen at this version, so that layout does not move.
export interface GoType {
  string: string;
  kind: number;
  nil?: unknown;
  elem?: GoType & { fields?: { prop: string; typ: GoType }[] };
}
/** A Go value of the syntax tree: a struct pointer, or an interface holding one. */
export interface GoValue {
  constructor: GoType;
  Pos(): { Offset(): number };
  End(): { Offset(): number };
  [field: string]: any;
}
/** A Go slice. */
export interface GoSlice {
  $array: GoValue[];
  $offset: number;
  $length: number;
}
export interface Syntax {
  NewParser(...options: unknown[]): { Parse(src: string, name: string): { __internal_object__: GoValue } };
  Variant(lang: number): unknown;
  LangBash: number;
  LangPOSIX: number;
}

/** GopherJS kind numbers of pointers, slices and interfaces, read from the tree's own types. */
export interface Kinds {
  ptr: number;
  slice: number;
  iface: number;
}

/** Operator numbers of this build of the parser, learnt from sample parses rather than hard-coded. */
export interface Operators {
  hdoc: number;
  dashHdoc: number;
  wordHdoc: number;
  /** `<`, `<&` and `<>`: input from a file or a descriptor. */
  input: number[];
}

export interface Parser {
  syntax: Syntax;
  ops: Operators;
  kinds: Kinds;
}

let loaded: Parser | undefined;

type TimerGlobals = { setTimeout: unknown; clearTimeout: unknown };

/**
 * Runs `fn` with inert timers. GopherJS's goroutine scheduler calls `setTimeout`, which
 * inside a workflow is a durable timer: it would add commands to the task's history.
 */
export function withInertTimers<T>(fn: () => T): T {
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

/** The instant the parser's load reads as "now". */
const LOAD_INSTANT_MS = 0;

/** A `Date` whose clock reads {@link LOAD_INSTANT_MS}; dates it is given stay as they are. */
function loadingClock(RealDate: DateConstructor): DateConstructor {
  const FixedDate = function (this: unknown, ...args: unknown[]): Date | string {
    const d = args.length > 0 ? new (RealDate as any)(...args) : new RealDate(LOAD_INSTANT_MS);
    return new.target ? d : d.toString();
  } as unknown as DateConstructor;
  Object.assign(FixedDate, { now: () => LOAD_INSTANT_MS, parse: RealDate.parse, UTC: RealDate.UTC });
  (FixedDate as { prototype: Date }).prototype = RealDate.prototype;
  return FixedDate;
}

/**
 * The parser, loaded on first use. A workflow worker loads it once for all its workflows (see
 * `shell-preload.ts`); where this module is evaluated per workflow instead, each workflow loads its own.
 */
export function parser(): Parser {
  if (loaded) return loaded;
  const g = globalThis as unknown as { Error: ErrorConstructor; Date: DateConstructor };
  const RealError = g.Error;
  const RealDate = g.Date;
  // GopherJS assigns Error.stackTraceLimit while it loads; the workflow sandbox freezes Error.
  class LoadingError extends RealError {}
  Object.defineProperty(LoadingError, 'stackTraceLimit', { value: RealError.stackTraceLimit, writable: true });
  g.Error = LoadingError as unknown as ErrorConstructor;
  // It reads the clock as it loads (its time package, and its scheduler, which yields to a timer after a few
  // milliseconds), and outside a workflow (a preload) there is no workflow time to give. On one fixed instant the
  // load never yields, so it finishes however slow the machine, and no parse reads the clock.
  g.Date = loadingClock(RealDate);
  try {
    loaded = withInertTimers(() => {
      const syntax = (require('mvdan-sh') as { syntax: Syntax }).syntax;
      const tree = (src: string): GoValue => syntax.NewParser().Parse(src, '').__internal_object__;
      const redirOp = (src: string): number => items(items(tree(src).Stmts)[0]!.Redirs)[0]!.Op as number;
      const file = tree('a');
      const field = (v: GoValue, name: string): GoType => v.constructor.elem!.fields!.find((f) => f.prop === name)!.typ;
      return {
        syntax,
        kinds: { ptr: file.constructor.kind, slice: field(file, 'Stmts').kind, iface: field(items(file.Stmts)[0]!, 'Cmd').kind },
        ops: {
          hdoc: redirOp('a <<E\nE\n'),
          dashHdoc: redirOp('a <<-E\nE\n'),
          wordHdoc: redirOp('a <<< b'),
          input: [redirOp('a < b'), redirOp('a <& 3'), redirOp('a <> b')],
        },
      };
    });
  } finally {
    g.Error = RealError;
    g.Date = RealDate;
  }
  return loaded;
}

/** The elements of a Go slice. */
export function items(slice: GoSlice): GoValue[] {
  return slice.$array.slice(slice.$offset, slice.$offset + slice.$length);
}
