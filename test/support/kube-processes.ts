/**
 * The child processes of a test cluster: each runs in its own process group (so that stopping it also ends what
 * kwok exec'd), logs to a file, and is killed when this process exits, including by SIGKILL, through a watchdog
 * that outlives it by a moment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** How long a process may take to stop after SIGTERM before it is killed. */
const STOP_GRACE_MS = 5_000;

const liveGroups = new Set<number>();
const WATCHDOG_SCRIPT = [
  'trap "" INT HUP TERM',
  'gs=" "',
  'while read -r op g; do',
  '  case $op in',
  '    add) gs="$gs$g " ;;',
  '    del) case $gs in *" $g "*) gs="${gs%%" $g "*} ${gs#*" $g "}" ;; esac ;;',
  '  esac',
  'done',
  'for g in $gs; do kill -s KILL -- "-$g" 2>/dev/null; done',
].join('\n');
let exitHooksInstalled = false;
let watchdog: ChildProcess | undefined;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
      liveGroups.clear();
      // Only take over the default action when nobody else handles the signal.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.once(sig, onSignal);
  }
  // The watchdog reads "add PGID" / "del PGID" lines on stdin; when this
  // process dies its stdin closes and it kills every group still listed.
  watchdog = spawn('sh', ['-c', WATCHDOG_SCRIPT], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  watchdog.on('error', () => undefined);
  watchdog.unref();
  const stdin = watchdog.stdin as (NodeJS.WritableStream & { _handle?: { unref?: () => void } }) | null;
  stdin?.on('error', () => undefined);
  stdin?._handle?.unref?.();
}

function forgetGroup(pgid: number): void {
  if (liveGroups.delete(pgid)) watchdog?.stdin?.write(`del ${pgid}\n`);
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

export interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<void>;
  /** Resolves to an Error if the process exits, or could not start. */
  failed: Promise<Error>;
}

export function startProcess(name: string, file: string, args: string[], logDir: string, env: NodeJS.ProcessEnv = process.env): Proc {
  installExitHooks();
  const logFile = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    fs.writeSync(fd, `# ${new Date().toISOString()} ${file} ${args.join(' ')}\n`);
    child = spawn(file, args, { stdio: ['ignore', fd, fd], detached: true, env });
  } finally {
    fs.closeSync(fd);
  }
  const pgid = child.pid;
  if (pgid !== undefined) {
    liveGroups.add(pgid);
    watchdog?.stdin?.write(`add ${pgid}\n`);
  }
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      spawnError = err;
      resolve();
    });
    child.once('exit', () => resolve());
  });
  const failed = exited.then(() => {
    const how = spawnError ? `could not start (${spawnError.message})` : `exited (code ${child.exitCode}, signal ${child.signalCode})`;
    return new Error(`${name} ${how}; last log lines:\n${tail(logFile)}`);
  });
  return { name, child, logFile, exited, failed };
}

export async function stopProcess(p: Proc): Promise<void> {
  const pgid = p.child.pid;
  if (pgid === undefined) return;
  if (p.child.exitCode === null && p.child.signalCode === null) {
    killGroup(pgid, 'SIGTERM');
    const timer = setTimeout(() => killGroup(pgid, 'SIGKILL'), STOP_GRACE_MS);
    await p.exited;
    clearTimeout(timer);
  }
  // Whatever the process left in its group (commands kwok exec'd).
  killGroup(pgid, 'SIGKILL');
  forgetGroup(pgid);
}

export function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
