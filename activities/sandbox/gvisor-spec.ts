/**
 * What a gVisor sandbox is made of, as runsc reads it: the OCI bundle of the sandbox (root file
 * system, mounts, hard limits, the reaping init), the process spec of each command, and the script
 * that kills commands from inside. Pure data and one bundle write; the driver runs runsc.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** Where the working copy and its repository appear inside the sandbox. */
export const GVISOR_WORKDIR = '/workspace';
export const GVISOR_GIT_DIR = '/workspace.git';
/** Host threads and processes the sandbox's own runtime may use (not commands: those have their own limit). */
const HOST_PIDS_LIMIT = 4_096;

/** Limits and layout of every sandbox a driver makes. */
export interface GvisorLimits {
  /** Memory of the whole sandbox (commands, page cache of `/tmp`, the runtime itself). */
  memoryMb: number;
  /** Processes the sandbox's commands may have at once (RLIMIT_NPROC): a fork bomb stops here. */
  processesPerCommand: number;
  /** CPU seconds any one process may use (RLIMIT_CPU); each command's wall-clock timeout applies as well. */
  cpuSecondsPerCommand: number;
  /** Size of the private `/tmp`. */
  tmpMb: number;
  /** Open files per process. */
  openFiles: number;
  /** Size of each working copy's own disk (0: the working copy shares the worker's disk, unbounded). */
  diskMb: number;
  /** Files and directories each working copy's disk can hold. */
  diskInodes: number;
  /** The largest file any process may write (RLIMIT_FSIZE), in `/tmp` as in the working copy. */
  fileSizeMb: number;
}

export const DEFAULT_GVISOR_LIMITS: GvisorLimits = {
  memoryMb: 2_048,
  processesPerCommand: 512,
  cpuSecondsPerCommand: 3_600,
  tmpMb: 512,
  openFiles: 4_096,
  diskMb: 8_192,
  diskInodes: 500_000,
  fileSizeMb: 2_048,
};

/**
 * Kills, from inside the sandbox, every process of the commands' user (`$TARGET_UID`), or only those
 * of process group `$PG` when it is set. It runs as root with CAP_KILL alone: commands have no
 * capabilities, and a fork bomb that used up their user's process limit cannot block it. Signals go
 * one process at a time (gVisor delivers a signal sent to a group or to -1 to the leader only), and the
 * walk repeats while it found anything, since a process may fork while the list is read.
 */
export const KILL_SCRIPT = `me=$$
for round in 1 2 3 4 5 6 7 8 9 10; do
  hit=0
  for s in /proc/[0-9]*/stat; do
    p=\${s#/proc/}; p=\${p%/stat}
    if [ "$p" = "$me" ] || [ "$p" = 1 ]; then continue; fi
    u=$(sed -n 's/^Uid:[[:space:]]*\\([0-9]*\\).*/\\1/p' "/proc/$p/status" 2>/dev/null)
    if [ "$u" != "$TARGET_UID" ]; then continue; fi
    set -- $(sed 's/.*) //' "$s" 2>/dev/null) || continue
    if [ -n "$PG" ] && [ "$3" != "$PG" ]; then continue; fi
    if [ "$1" = Z ]; then continue; fi
    kill -s KILL "$p" 2>/dev/null && hit=1
  done
  [ "$hit" = 0 ] && break
  sleep 0.05
done
exit 0`;

/** The OCI process spec of one command: the unprivileged user, a scrubbed environment plus `env`, no capabilities. */
export function commandProcessSpec(args: string[], env: Record<string, string> | undefined, user: { uid: number; gid: number }): object {
  const base: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/tmp',
    TMPDIR: '/tmp',
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    CI: '1',
    GIT_TERMINAL_PROMPT: '0',
    GIT_DIR: GVISOR_GIT_DIR,
    GIT_WORK_TREE: GVISOR_WORKDIR,
    ...env,
  };
  return {
    terminal: false,
    user,
    args,
    env: Object.entries(base).map(([k, v]) => `${k}=${v}`),
    cwd: GVISOR_WORKDIR,
    noNewPrivileges: true,
    capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
  };
}

/** What a sandbox's bundle is made of. */
export interface BundleLayout {
  /** The working copy on the host, mounted read-write at {@link GVISOR_WORKDIR}. */
  hostWorkdir: string;
  /** Its repository on the host, mounted read-only at {@link GVISOR_GIT_DIR}. */
  gitDir: string;
  /** An unpacked image to use as the root file system; undefined: the host's `/usr` and `/etc`, read-only. */
  rootfs: string | undefined;
  limits: GvisorLimits;
  /** The network namespace (a path) runsc's netstack takes over; undefined: a namespace of its own, with no network. */
  netns?: string;
}

/** Write the OCI bundle (`config.json`, and an empty root when no image is given) of one sandbox into `bundle`. */
export async function writeBundle(bundle: string, layout: BundleLayout): Promise<void> {
  const { hostWorkdir, gitDir, limits } = layout;
  const rootfs = layout.rootfs ?? path.join(bundle, 'rootfs');
  if (layout.rootfs === undefined) {
    for (const d of ['usr', 'etc', 'proc', 'dev', 'tmp', 'workspace', 'workspace.git']) await fs.mkdir(path.join(rootfs, d), { recursive: true });
    // Debian's merged /usr: the top-level names are links into it.
    for (const name of ['bin', 'lib', 'lib64', 'sbin']) {
      // A bundle written again (a sandbox restarted with networking) has them already; the links point into
      // a mount point that is empty on the host, so they are looked at, never followed.
      if (!(await fs.lstat(path.join(rootfs, name)).then(() => true, () => false))) await fs.symlink(`usr/${name}`, path.join(rootfs, name));
    }
  }
  const ro = ['rbind', 'ro', 'nosuid', 'nodev'];
  const mounts: object[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', `size=${limits.tmpMb}m`] },
    ...(layout.rootfs === undefined
      ? [
          { destination: '/usr', type: 'bind', source: '/usr', options: ro },
          { destination: '/etc', type: 'bind', source: '/etc', options: ro },
        ]
      : []),
    { destination: GVISOR_WORKDIR, type: 'bind', source: path.resolve(hostWorkdir), options: ['rbind', 'rw', 'nosuid', 'nodev'] },
    { destination: GVISOR_GIT_DIR, type: 'bind', source: gitDir, options: ro },
  ];
  const spec = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      // The init only reaps orphans; commands run as the unprivileged user.
      user: { uid: 0, gid: 0 },
      // A SIGCHLD handler cuts the idle sleep short, so an orphan is reaped as soon as it exits.
      args: ['/usr/bin/perl', '-e', "$0 = 'sandbox-init'; $SIG{CHLD} = sub {}; while (1) { sleep 1 if wait() == -1 }"],
      env: ['PATH=/usr/bin:/bin'],
      cwd: '/',
      noNewPrivileges: true,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      // Every process in the sandbox gets these hard limits (`runsc exec` sets none of its own, and
      // limits changed inside one command would carry over to the next, so none are set per command).
      rlimits: [
        { type: 'RLIMIT_NPROC', hard: limits.processesPerCommand, soft: limits.processesPerCommand },
        { type: 'RLIMIT_CPU', hard: limits.cpuSecondsPerCommand, soft: limits.cpuSecondsPerCommand },
        { type: 'RLIMIT_NOFILE', hard: limits.openFiles, soft: limits.openFiles },
        { type: 'RLIMIT_FSIZE', hard: limits.fileSizeMb * 1024 * 1024, soft: limits.fileSizeMb * 1024 * 1024 },
      ],
    },
    root: { path: rootfs, readonly: true },
    hostname: 'sandbox',
    mounts,
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, layout.netns === undefined ? { type: 'network' } : { type: 'network', path: layout.netns }],
      resources: {
        memory: { limit: limits.memoryMb * 1024 * 1024 },
        pids: { limit: HOST_PIDS_LIMIT },
      },
    },
  };
  await fs.mkdir(bundle, { recursive: true });
  await fs.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 1));
}

/** The network namespace path a bundle names (it has networking), or undefined (none, or no bundle). */
export async function bundleNetns(bundle: string): Promise<string | undefined> {
  const text = await fs.readFile(path.join(bundle, 'config.json'), 'utf8').catch(() => null);
  if (text === null) return undefined;
  const spec = JSON.parse(text) as { linux?: { namespaces?: { type: string; path?: string }[] } };
  return spec.linux?.namespaces?.find((n) => n.type === 'network')?.path;
}
