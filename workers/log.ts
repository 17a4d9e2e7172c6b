/**
 * Structured logging for processes outside the workflow sandbox: one JSON line per event.
 */

/** A constant message plus an attributes object; never pass secrets. */
export interface Logger {
  debug(msg: string, attrs?: Record<string, unknown>): void;
  info(msg: string, attrs?: Record<string, unknown>): void;
  warn(msg: string, attrs?: Record<string, unknown>): void;
  error(msg: string, attrs?: Record<string, unknown>): void;
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
/** Log verbosity names, lowest first. */
export type LogLevel = keyof typeof LEVELS;

/** A logger writing JSON lines to stderr, dropping entries below `level`. */
export function createLogger(opts: { level?: LogLevel; component?: string } = {}): Logger {
  const min = LEVELS[opts.level ?? 'info'];
  const write =
    (level: LogLevel) =>
    (msg: string, attrs?: Record<string, unknown>): void => {
      if (LEVELS[level] < min) return;
      const line = { time: new Date().toISOString(), level, component: opts.component, msg, ...attrs };
      process.stderr.write(`${JSON.stringify(line, errorReplacer)}\n`);
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** Errors do not serialise to JSON on their own; keep their name, message and stack. */
function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}
