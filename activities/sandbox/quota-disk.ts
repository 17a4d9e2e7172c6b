/**
 * A disk of its own for each working copy: a sparse ext4 image, loop-mounted over the working copy's
 * directory, so a sandbox that fills its disk stops at its own quota (and its own inode count) while
 * the worker's disk, the embedded Temporal database and every other task keep working.
 */
import { execFile } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';

/** How long mkfs, mount, umount and the copy into a new disk may take. */
const DISK_COMMAND_TIMEOUT_MS = 120_000;
/** Free space under which a failed command is reported as having filled the disk. */
const FULL_BELOW_BYTES = 1024 * 1024;

/** Size and file count of one working copy's disk. */
export interface QuotaDiskSize {
  sizeMb: number;
  inodes: number;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: DISK_COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${String(stderr).trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Attempts at a loop mount: two mounts racing for the same free loop device make one fail. */
const LOOP_MOUNT_ATTEMPTS = 5;
const LOOP_RETRY_MS = 100;
/** Loop mounts of this process, one at a time (the kernel hands the same free device to racing callers). */
let loopMounts: Promise<unknown> = Promise.resolve();

/** Mount the image `image` at `dir` through a loop device, one mount at a time, retrying a lost race for a device. */
function mountLoop(image: string, dir: string): Promise<void> {
  const attempt = async (): Promise<void> => {
    for (let i = 1; ; i++) {
      try {
        await run('mount', ['-o', 'loop,nosuid,nodev', '--', image, dir]);
        return;
      } catch (err) {
        if (i >= LOOP_MOUNT_ATTEMPTS || !/loop device/i.test(String(err))) throw err;
        await new Promise((r) => setTimeout(r, LOOP_RETRY_MS * i));
      }
    }
  };
  const next = loopMounts.then(attempt, attempt);
  loopMounts = next.catch(() => undefined);
  return next;
}

/** Whether `dir` is the mount point of a mounted file system (from the kernel's mount table). */
export async function isMountPoint(dir: string): Promise<boolean> {
  const want = path.resolve(dir);
  const table = await fs.readFile('/proc/self/mountinfo', 'utf8');
  // Field 5 is the mount point, with space, tab, newline and backslash written as octal escapes.
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  return table.split('\n').some((line) => unescape(line.split(' ')[4] ?? '') === want);
}

/**
 * Put the working copy at `workdir` on the disk image `image`: mount the image when it exists, else
 * make it, copy what `workdir` holds (a fresh clone, before any sandbox runs) onto it and mount it
 * there. Nothing happens when `workdir` is already its mount point.
 */
export async function attachQuotaDisk(image: string, workdir: string, size: QuotaDiskSize): Promise<void> {
  if (await isMountPoint(workdir)) return;
  if (existsSync(image)) {
    await mountLoop(image, workdir);
    return;
  }
  const staging = `${image}.staging`;
  const fresh = `${image}.new`;
  await fs.rm(fresh, { force: true });
  await fs.mkdir(staging, { recursive: true });
  try {
    const handle = await fs.open(fresh, 'w', 0o600);
    await handle.truncate(size.sizeMb * 1024 * 1024);
    await handle.close();
    // No journal: the disk is scratch space that dies with the task; a crash costs a re-clone at most.
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-N', String(size.inodes), '-E', 'nodiscard,lazy_itable_init=1', '--', fresh]);
    await mountLoop(fresh, staging);
    try {
      await fs.rmdir(path.join(staging, 'lost+found'));
      await run('cp', ['-a', '--no-dereference', '--', `${workdir}/.`, `${staging}/`]);
    } finally {
      await run('umount', ['--', staging]);
    }
    await fs.rename(fresh, image);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
    await fs.rm(fresh, { force: true });
  }
  // The copy on the worker's disk is hidden by the mount and would only take space: empty the directory first.
  for (const name of await fs.readdir(workdir)) await fs.rm(path.join(workdir, name), { recursive: true, force: true });
  await mountLoop(image, workdir);
}

/** Unmount the working copy's disk, if mounted (lazily when something still holds it open). */
export async function detachQuotaDisk(workdir: string): Promise<void> {
  if (!(await isMountPoint(workdir))) return;
  try {
    await run('umount', ['--', workdir]);
  } catch {
    await run('umount', ['-l', '--', workdir]);
  }
}

/** Whether the disk holding `workdir` is full: no space or no inodes left. */
export async function diskIsFull(workdir: string): Promise<boolean> {
  const st = await fs.statfs(workdir).catch(() => null);
  if (st === null) return false;
  return st.bavail * st.bsize < FULL_BELOW_BYTES || st.ffree === 0;
}

/** Size of the disk `probeQuotaDisks` makes. */
const PROBE_DISK_MB = 16;

/** Make, mount and remove a small disk under `root`: fails, saying why, where working-copy disks cannot be made. */
export async function probeQuotaDisks(root: string): Promise<void> {
  const dir = path.join(root, '.disk-probe');
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(path.join(dir, 'mnt'), { recursive: true });
  try {
    await attachQuotaDisk(path.join(dir, 'probe.img'), path.join(dir, 'mnt'), { sizeMb: PROBE_DISK_MB, inodes: 1_000 });
    await detachQuotaDisk(path.join(dir, 'mnt'));
  } finally {
    await detachQuotaDisk(path.join(dir, 'mnt')).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  }
}
