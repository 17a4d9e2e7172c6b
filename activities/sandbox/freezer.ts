/**
 * Freezing a sandbox while the worker reads its working copy. git, as root, opens paths of the working
 * copy one after another; a process the sandbox left running could swap a directory for a link between
 * git's look and git's read. Frozen, nothing in the sandbox runs, so nothing changes under git.
 *
 * The sandbox's freezer is its own cgroup's, found from its runtime process (cgroup v1's freezer
 * controller, or v2's `cgroup.freeze`); freezing and thawing are single writes.
 */
import { promises as fs } from 'node:fs';

/** How long a freeze may take to settle before the sandbox counts as not freezable. */
const FREEZE_SETTLE_MS = 5_000;
const FREEZE_POLL_MS = 2;

/** The freezer of one cgroup. */
export interface Freezer {
  freeze(): Promise<void>;
  thaw(): Promise<void>;
}

/** The freezer of the cgroup process `pid` belongs to, or null when it has none we can use. */
export async function freezerOfProcess(pid: number): Promise<Freezer | null> {
  const table = await fs.readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => null);
  if (table === null) return null;
  for (const line of table.split('\n')) {
    const [, controllers, cgroup] = line.split(':');
    if (cgroup === undefined || cgroup === '/') continue;
    if (controllers === 'freezer') {
      const file = `/sys/fs/cgroup/freezer${cgroup}/freezer.state`;
      if (!(await exists(file))) continue;
      return {
        freeze: async () => {
          await fs.writeFile(file, 'FROZEN');
          await settle(async () => (await fs.readFile(file, 'utf8')).trim() === 'FROZEN');
        },
        thaw: () => fs.writeFile(file, 'THAWED'),
      };
    }
    if (controllers === '') {
      const dir = `/sys/fs/cgroup${cgroup}`;
      if (!(await exists(`${dir}/cgroup.freeze`))) continue;
      return {
        freeze: async () => {
          await fs.writeFile(`${dir}/cgroup.freeze`, '1');
          await settle(async () => /^frozen 1$/m.test(await fs.readFile(`${dir}/cgroup.events`, 'utf8')));
        },
        thaw: () => fs.writeFile(`${dir}/cgroup.freeze`, '0'),
      };
    }
  }
  return null;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

async function settle(done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + FREEZE_SETTLE_MS;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error('the sandbox did not freeze');
    await new Promise((r) => setTimeout(r, FREEZE_POLL_MS));
  }
}
