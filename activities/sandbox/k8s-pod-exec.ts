/**
 * Commands in a sandbox pod over `pods/exec`: one exec through the API server (settling on the
 * status frame, the socket closing, an error or a signal), and the scripts that run a command in a
 * session of its own and kill such sessions.
 *
 * What a command must get without it passing through the exec request (its query string is the
 * command line, which API servers and node agents may log) goes over the exec's stdin instead: the
 * script reads one line of `export` statements first.
 */
import { PassThrough, type Readable } from 'node:stream';
import type * as k8s from '@kubernetes/client-node';
import { SandboxAbortedError } from './common';
import { apiError, kube, KubernetesSandboxError } from './k8s-api';
import { CollectingWritable, type PausableSocket, type PodExecIo } from './pod-copy';

/** The container, namespace and client of one exec. */
export interface PodExecTarget {
  kc: k8s.KubeConfig;
  namespace: string;
  pod: string;
  container: string;
}

/** How long a status frame that arrives with the socket's close is given to be handled first. */
const CLOSE_GRACE_MS = 50;

/**
 * One exec through the API server. Settles on the status frame, on the socket closing, on an
 * error or on the signal, whichever comes first: the status frame is not always sent.
 */
export async function podExec(t: PodExecTarget, command: string[], io: PodExecIo & { timeoutMs: number }): Promise<{ exitCode: number }> {
  const { Exec } = await kube();
  const exec = new Exec(t.kc);
  const name = t.pod;
  return new Promise((resolve, reject) => {
    let settled = false;
    let ws: { close(): void; readyState?: number } | null = null;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      io.signal?.removeEventListener('abort', onAbort);
      try {
        ws?.close();
      } catch {
        // closing a closed socket
      }
      fn();
    };
    const onAbort = (): void => settle(() => reject(new SandboxAbortedError(command.join(' '))));
    const timer = setTimeout(() => settle(() => reject(new KubernetesSandboxError(`exec in ${name} did not finish within ${io.timeoutMs / 1000} s`, true))), io.timeoutMs);
    if (io.signal?.aborted) return onAbort();
    io.signal?.addEventListener('abort', onAbort, { once: true });
    exec
      // The API server refuses an exec with no stream at all, so there is always somewhere for stdout to go.
      .exec(t.namespace, name, t.container, command, io.stdout ?? new CollectingWritable(), io.stderr ?? null, io.stdin ?? null, false, (status: k8s.V1Status) => {
        settle(() => {
          const code = exitCodeOf(status);
          if (code === null) reject(new KubernetesSandboxError(`exec in ${name} failed: ${status.message ?? status.reason ?? 'unknown status'}`, true));
          else resolve({ exitCode: code });
        });
      })
      .then((socket) => {
        ws = socket as unknown as { close(): void };
        if (settled) ws.close();
        else io.onSocket?.(socket as unknown as PausableSocket);
        (socket as unknown as NodeJS.EventEmitter).on('close', () => {
          setTimeout(() => settle(() => reject(new KubernetesSandboxError(`exec in ${name} ended without an exit status`, true))), CLOSE_GRACE_MS);
        });
        (socket as unknown as NodeJS.EventEmitter).on('error', (err: unknown) => settle(() => reject(apiError(t.namespace, 'exec', err))));
      })
      .catch((err: unknown) => settle(() => reject(apiError(t.namespace, 'exec', err))));
  });
}

/** Exit code from an exec status frame: 0 on Success, the ExitCode cause on NonZeroExitCode, null otherwise. */
export function exitCodeOf(status: k8s.V1Status): number | null {
  if (status.status === 'Success') return 0;
  if (status.reason === 'NonZeroExitCode') {
    const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
    const code = Number(cause?.message);
    return Number.isInteger(code) ? code : null;
  }
  return null;
}

/** Where the session ids of running commands are written, under the pod's tmp directory. */
export function commandsDir(tmpPath: string): string {
  return `${tmpPath}/.agent-commands`;
}

/** A command's script, and the stdin it reads its private variables from. */
export interface CommandScript {
  script: string;
  stdin: Readable;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The script that runs `command` in `workdir` in a session of its own whose id is written to
 * `<commandsDir>/<tag>`, so a timeout, a cancellation or a later kill can end exactly the commands
 * the driver started (and all they spawned). `privateEnv` is read from stdin (see the module
 * comment); `env` is exported after it, so the caller's variables win.
 */
export function commandScript(o: { command: string; workdir: string; tmpPath: string; tag: string; env?: Record<string, string>; privateEnv?: Record<string, string> }): CommandScript {
  const dir = commandsDir(o.tmpPath);
  const secretLine = exportLine(o.privateEnv ?? {});
  if (secretLine.includes('\n')) throw new Error('a private variable of a command must not contain a newline');
  const script = [
    // One line, evaluated as it was written by the driver: the values are quoted.
    'IFS= read -r agent_private_env || exit 125',
    'eval "$agent_private_env"; unset agent_private_env',
    `mkdir -p ${dir}`,
    `cd ${shellQuote(o.workdir)}`,
    exportLine(o.env ?? {}),
    // The session leader writes its own id: setsid may fork, so `$!` need not be it.
    `setsid /bin/sh -c 'echo $$ > "$0"; exec /bin/sh -c "$1"' ${dir}/${o.tag} ${shellQuote(o.command)} </dev/null &`,
    'wait $!; rc=$?',
    `rm -f ${dir}/${o.tag}`,
    'exit $rc',
  ]
    .filter(Boolean)
    .join('\n');
  // Through a PassThrough, as for copies into the pod: the exec client delivers its end.
  const stdin = new PassThrough();
  stdin.end(`${secretLine}\n`);
  return { script, stdin };
}

/** The script that kills the session of one command (`tag`), or of every command the driver started (null). */
export function killScript(tmpPath: string, tag: string | null): string {
  const dir = commandsDir(tmpPath);
  const files = tag === null ? `${dir}/*` : `${dir}/${tag}`;
  return `for f in ${files}; do [ -f "$f" ] || continue; p=$(cat "$f"); case "$p" in ''|*[!0-9]*) ;; *) kill -s KILL -- "-$p" 2>/dev/null; kill -s KILL "$p" 2>/dev/null;; esac; rm -f "$f"; done; exit 0`;
}

function exportLine(env: Record<string, string>): string {
  return Object.entries(env)
    .filter(([k]) => ENV_NAME.test(k))
    .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
    .join('; ');
}

/** `s` as one single-quoted shell word. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
